// gRPC status codes as tote's error kinds: one table for every gRPC boundary (containerd, the agent API), so a code
// means the same thing wherever it arrives.
import { status as Status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import type { ErrorKind } from '../api/errors.ts';

const kindByCode: Partial<Record<Status, ErrorKind>> = {
  [Status.UNAVAILABLE]: 'transient',
  [Status.DEADLINE_EXCEEDED]: 'transient',
  [Status.RESOURCE_EXHAUSTED]: 'transient',
  [Status.CANCELLED]: 'transient',
  [Status.INTERNAL]: 'transient',
  [Status.UNKNOWN]: 'transient',
  [Status.FAILED_PRECONDITION]: 'terminal',
  [Status.INVALID_ARGUMENT]: 'terminal',
  [Status.OUT_OF_RANGE]: 'terminal',
  [Status.UNIMPLEMENTED]: 'terminal',
  [Status.ABORTED]: 'conflict',
  [Status.NOT_FOUND]: 'not-found',
  [Status.ALREADY_EXISTS]: 'already-exists',
  [Status.PERMISSION_DENIED]: 'unauthorized',
  [Status.UNAUTHENTICATED]: 'unauthorized',
  [Status.DATA_LOSS]: 'integrity',
};

/** The kind a gRPC status code stands for; codes not in the table are transient (retrying is the safe default). */
export const kindForGrpcCode = (code: number): ErrorKind => kindByCode[code as Status] ?? 'transient';

export const isGrpcServiceError = (err: unknown): err is ServiceError =>
  err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number';
