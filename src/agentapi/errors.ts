// The agent API's error contract: each tote error kind travels as one gRPC status code, its CamelCase reason in the
// `tote-reason` trailer, so a ToteError thrown in one agent arrives as the same kind and reason at its caller.
import { Metadata, status as Status } from '@grpc/grpc-js';
import type { StatusObject } from '@grpc/grpc-js';
import { ToteError } from '../api/errors.ts';
import { isGrpcServiceError, kindForGrpcCode } from '../grpc/errors.ts';
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

/** Client side: a ToteError of the kind and reason the agent sent (transport failures are transient). */
export function fromAgentError(err: unknown, operation: string): ToteError {
  if (err instanceof ToteError) return err;
  if (!isGrpcServiceError(err)) {
    return new ToteError('transient', 'AgentUnreachable', `agent ${operation}: ${String(err)}`, { cause: err });
  }
  const kind = kindForGrpcCode(err.code);
  const sent = err.metadata?.get(reasonTrailer)[0];
  const reason = typeof sent === 'string' && sent !== '' ? sent : `Agent${Status[err.code] ?? 'Error'}`;
  return new ToteError(kind, reason, `agent ${operation}: ${err.details || err.message}`, { cause: err });
}
