// Typed errors shared by every layer. Adapters (Kubernetes API, containerd/agent gRPC, registry HTTP) convert the
// errors of their transport into these at the boundary, so callers decide by `kind`, never by matching messages.

/** How a caller should react to a failure. */
export type ErrorKind =
  /** Worth retrying with backoff: timeouts, unavailable peers, 5xx, connection resets, lock contention. */
  | 'transient'
  /** Retrying cannot help (bad input, refused by policy, integrity violation); surface it as a condition. */
  | 'terminal'
  /** The object changed underneath (HTTP 409, stale resourceVersion): re-read and retry at once. */
  | 'conflict'
  /** The thing does not exist (HTTP 404, gRPC NOT_FOUND). */
  | 'not-found'
  /** It already exists (HTTP 409 on create, gRPC ALREADY_EXISTS); often success for idempotent steps. */
  | 'already-exists'
  /** Credentials missing, wrong or expired (HTTP 401/403, gRPC UNAUTHENTICATED/PERMISSION_DENIED). */
  | 'unauthorized'
  /** Bytes did not match their digest, or a stream was longer or shorter than announced. */
  | 'integrity';

export class ToteError extends Error {
  readonly kind: ErrorKind;
  /** A CamelCase reason suitable for a condition or an Event. */
  readonly reason: string;

  constructor(kind: ErrorKind, reason: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ToteError';
    this.kind = kind;
    this.reason = reason;
  }
}

export const isToteError = (err: unknown, kind?: ErrorKind): err is ToteError =>
  err instanceof ToteError && (kind === undefined || err.kind === kind);

/** True when a retry with backoff may succeed. Unknown errors count as transient: failing safe means retrying. */
export const isRetryable = (err: unknown): boolean =>
  !(err instanceof ToteError) || err.kind === 'transient' || err.kind === 'conflict';

/** The message of anything thrown, for logs and status messages. */
export const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));
