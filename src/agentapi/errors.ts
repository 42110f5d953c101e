// The agent API's error contract: each tote error kind travels as one gRPC status code, its CamelCase reason in the
// `tote-reason` trailer, so a ToteError thrown in one agent arrives as the same kind and reason at its caller.
import { Metadata, status as Status } from '@grpc/grpc-js';
import type { ServiceError, StatusObject } from '@grpc/grpc-js';
import { ToteError } from '../api/errors.ts';
import type { ErrorKind } from '../api/errors.ts';

export const reasonTrailer = 'tote-reason';

const codeByKind: Record<ErrorKind, Status> = {
  transient: Status.UNAVAILABLE,
  terminal: Status.FAILED_PRECONDITION,
  conflict: Status.ABORTED,
  'not-found': Status.NOT_FOUND,
  'already-exists': Status.ALREADY_EXISTS,
  unauthorized: Status.PERMISSION_DENIED,
  integrity: Status.DATA_LOSS,
};

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

/** Server side: the status to answer for anything a handler threw (unknown errors become INTERNAL). */
export function toStatus(err: unknown): Partial<StatusObject> {
  const metadata = new Metadata();
  if (err instanceof ToteError) {
    metadata.set(reasonTrailer, err.reason);
    return { code: codeByKind[err.kind], details: err.message, metadata };
  }
  metadata.set(reasonTrailer, 'InternalError');
  return { code: Status.INTERNAL, details: err instanceof Error ? err.message : String(err), metadata };
}

const isServiceError = (err: unknown): err is ServiceError =>
  err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number';

/** Client side: a ToteError of the kind and reason the agent sent (transport failures are transient). */
export function fromAgentError(err: unknown, operation: string): ToteError {
  if (err instanceof ToteError) return err;
  if (!isServiceError(err)) {
    return new ToteError('transient', 'AgentUnreachable', `agent ${operation}: ${String(err)}`, { cause: err });
  }
  const kind = kindByCode[err.code as Status] ?? 'transient';
  const sent = err.metadata?.get(reasonTrailer)[0];
  const reason = typeof sent === 'string' && sent !== '' ? sent : `Agent${Status[err.code] ?? 'Error'}`;
  return new ToteError(kind, reason, `agent ${operation}: ${err.details || err.message}`, { cause: err });
}
