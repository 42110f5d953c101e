// The HTTP boundary of the registry client: registry answers and socket failures become ToteErrors here, so nothing
// above this file looks at status codes or messages to decide what to do.
import { STATUS_CODES } from 'node:http';
import { ToteError } from '../api/errors.ts';
import type { ErrorKind } from '../api/errors.ts';

/** One entry of the OCI Distribution error body `{"errors":[{"code","message","detail"}]}`. */
export interface OciErrorEntry {
  readonly code: string;
  readonly message?: string;
  readonly detail?: unknown;
}

/**
 * A registry answered with an error status. `kind` follows the status (401/403 unauthorized, 404 not-found,
 * 408/429/5xx transient, other 4xx terminal); `code` and `registryMessage` are the registry's own words from its OCI
 * error JSON when it sent some (e.g. `MANIFEST_BLOB_UNKNOWN`), for humans and for conditions.
 */
export class RegistryError extends ToteError {
  /** HTTP status the registry answered. */
  readonly status: number;
  /** The first OCI error code, e.g. `BLOB_UNKNOWN`, `DENIED`; undefined when the body had none. */
  readonly code: string | undefined;
  /** The registry's message for that code. */
  readonly registryMessage: string | undefined;
  /** Every error entry the registry sent. */
  readonly errors: readonly OciErrorEntry[];

  constructor(
    kind: ErrorKind,
    reason: string,
    message: string,
    details: { status: number; errors: readonly OciErrorEntry[]; cause?: unknown },
  ) {
    super(kind, reason, message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'RegistryError';
    this.status = details.status;
    this.errors = details.errors;
    this.code = details.errors[0]?.code;
    this.registryMessage = details.errors[0]?.message;
  }
}

/** Maps an HTTP status to how a caller should react. */
export function kindForStatus(status: number): ErrorKind {
  if (status === 401 || status === 403) return 'unauthorized';
  if (status === 404) return 'not-found';
  if (status === 408 || status === 429 || status >= 500) return 'transient';
  return 'terminal';
}

/** Parses an OCI error body; anything else (HTML from a proxy, empty) gives no entries. */
export function parseOciErrors(body: string): OciErrorEntry[] {
  if (body.trim() === '') return [];
  try {
    const parsed: unknown = JSON.parse(body);
    const list = (parsed as { errors?: unknown }).errors;
    if (!Array.isArray(list)) return [];
    return list
      .filter((e): e is Record<string, unknown> => typeof e === 'object' && e !== null && typeof e.code === 'string')
      .map((e) => ({
        code: e.code as string,
        ...(typeof e.message === 'string' ? { message: e.message } : {}),
        ...(e.detail !== undefined ? { detail: e.detail } : {}),
      }));
  } catch {
    return [];
  }
}

/** `MANIFEST_BLOB_UNKNOWN` → `ManifestBlobUnknown`, for condition reasons. */
const camel = (code: string): string =>
  code
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w !== '')
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
    .join('');

/**
 * Builds the error for a non-success answer. `what` says what was being done (`HEAD manifest …`) — never a
 * credential — and the message carries the registry's code and message verbatim.
 */
export function errorFromResponse(status: number, body: string, what: string): RegistryError {
  const errors = parseOciErrors(body);
  const kind = kindForStatus(status);
  const first = errors[0];
  const said =
    first !== undefined
      ? `: ${first.code}${first.message !== undefined ? `: ${first.message}` : ''}`
      : ` (${STATUS_CODES[status] ?? 'unknown status'})`;
  const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : '';
  const reason =
    first !== undefined
      ? `Registry${camel(first.code)}`
      : kind === 'unauthorized'
        ? 'RegistryUnauthorized'
        : kind === 'not-found'
          ? 'RegistryNotFound'
          : `RegistryHTTP${status}`;
  return new RegistryError(kind, reason, `${what}: registry answered ${status}${said}${more}`, { status, errors });
}

/** Socket-level error codes after which the same request may succeed later. */
const transientCodes = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
  'UND_ERR_SOCKET',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

/** Converts a thrown transport error (not an HTTP answer) into a ToteError; ToteErrors pass through unchanged. */
export function errorFromTransport(err: unknown, what: string): ToteError {
  if (err instanceof ToteError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (typeof code === 'string') {
    if (transientCodes.has(code)) {
      return new ToteError('transient', 'RegistryUnreachable', `${what}: ${code}: ${message}`, { cause: err });
    }
    if (/CERT|TLS|SSL|SELF_SIGNED|UNABLE_TO/.test(code)) {
      return new ToteError('terminal', 'RegistryTLSError', `${what}: TLS: ${code}: ${message}`, { cause: err });
    }
  }
  // "socket hang up" and friends carry ECONNRESET; anything else unknown is retried, failing safe.
  return new ToteError('transient', 'RegistryUnreachable', `${what}: ${message}`, { cause: err });
}
