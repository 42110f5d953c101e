// containerd reports failures as gRPC status codes (its errdefs package maps its own error kinds onto them one to one).
// This is the single place where they become tote's typed errors; nothing above the adapter sees a gRPC error.
import { status as Status } from '@grpc/grpc-js';
import { ToteError } from '../api/errors.ts';
import { isGrpcServiceError, kindForGrpcCode } from '../grpc/errors.ts';
import type { ErrorKind } from '../api/errors.ts';

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
  if (!isGrpcServiceError(err)) {
    return new ToteError('transient', 'ContainerdUnreachable', `containerd ${operation}: ${String(err)}`, {
      cause: err,
    });
  }
  const kind = overrides[err.code as Status] ?? kindForGrpcCode(err.code);
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
