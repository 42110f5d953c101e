// containerd reports failures as gRPC status codes (its errdefs package maps its own error kinds onto them one to one).
// This is the single place where they become tote's typed errors; nothing above the adapter sees a gRPC error.
import { status as Status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import { ToteError } from '../api/errors.ts';
import type { ErrorKind } from '../api/errors.ts';

const kindByCode: Partial<Record<Status, ErrorKind>> = {
  [Status.NOT_FOUND]: 'not-found',
  [Status.ALREADY_EXISTS]: 'already-exists',
  [Status.UNAVAILABLE]: 'transient',
  [Status.DEADLINE_EXCEEDED]: 'transient',
  [Status.RESOURCE_EXHAUSTED]: 'transient',
  [Status.CANCELLED]: 'transient',
  [Status.INTERNAL]: 'transient',
  [Status.UNKNOWN]: 'transient',
  [Status.ABORTED]: 'conflict',
  [Status.UNAUTHENTICATED]: 'unauthorized',
  [Status.PERMISSION_DENIED]: 'unauthorized',
  [Status.INVALID_ARGUMENT]: 'terminal',
  [Status.FAILED_PRECONDITION]: 'terminal',
  [Status.OUT_OF_RANGE]: 'terminal',
  [Status.UNIMPLEMENTED]: 'terminal',
  [Status.DATA_LOSS]: 'integrity',
};

const isServiceError = (err: unknown): err is ServiceError =>
  err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number';

/**
 * Converts anything a containerd call threw into a ToteError. `operation` names the call for the message
 * (`content.Write sha256:…`); `overrides` re-reads a code in the context of one call (e.g. FAILED_PRECONDITION at a
 * content commit means the bytes did not match: `integrity`).
 */
export function fromContainerdError(
  err: unknown,
  operation: string,
  overrides: Partial<Record<Status, ErrorKind>> = {},
): ToteError {
  if (err instanceof ToteError) return err;
  if (!isServiceError(err)) {
    return new ToteError('transient', 'ContainerdUnreachable', `containerd ${operation}: ${String(err)}`, {
      cause: err,
    });
  }
  const kind = overrides[err.code as Status] ?? kindByCode[err.code as Status] ?? 'transient';
  return new ToteError(
    kind,
    `Containerd${codeName(err.code)}`,
    `containerd ${operation}: ${err.details || err.message}`,
    {
      cause: err,
    },
  );
}

/** `NOT_FOUND` → `NotFound`, for the CamelCase reason. */
function codeName(code: number): string {
  const name = Status[code] ?? 'Unknown';
  return name
    .toLowerCase()
    .split('_')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
}
