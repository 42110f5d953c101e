// Blob reads between agents over HTTP/1.1 on the agent's mTLS port (the port multiplexes by ALPN: h2 is the gRPC API,
// http/1.1 this). Bulk bytes take this path instead of gRPC ReadBlob because a plain TLS byte stream costs a fraction
// of the CPU: no HTTP/2 framing reassembled into protobuf messages in JavaScript, no per-message allocation for the
// garbage collector (docs/agent.md has the measurements). Same authorisation as ReadBlob:
//
//   GET /v1/blobs/sha256:<hex>
//   Authorization: Bearer <transfer token>
//   Range: bytes=<offset>-            (optional; resume)
//   Connection: Upgrade
//   Upgrade: tote-blob/1
//   → 101 Switching Protocols, Tote-Blob-Length = blob size − offset, then the raw bytes on the TLS stream, which the
//     source closes after the last byte
//   → an error status with `tote-kind` and `tote-reason` headers and the message as the body
//
// The upgrade takes the HTTP parser off the byte stream: the target reads the TLS socket directly (a third less CPU
// per byte on the target than a parsed HTTP response body). Without the Upgrade header the same GET answers a plain
// 200/206 response (curl, debugging).
//
// Concurrency: one HttpsBlobReader per source agent, shared by the transfer's parallel blob fetches (a keep-alive
// connection pool); reads are independent.
import { request, Agent } from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { ToteError } from '../api/errors.ts';
import type { ErrorKind } from '../api/errors.ts';
import { tlsClientOptions } from './tls.ts';
import type { TlsMaterial } from './tls.ts';
import type { PeerIdentity } from './identity.ts';

export const blobPathPrefix = '/v1/blobs/';
export const kindHeader = 'tote-kind';
export const reasonHeader = 'tote-reason';
export const blobProtocol = 'tote-blob/1';
export const blobLengthHeader = 'tote-blob-length';

const statusByKind: Record<ErrorKind, number> = {
  transient: 503,
  terminal: 400,
  conflict: 409,
  'not-found': 404,
  'already-exists': 409,
  unauthorized: 403,
  integrity: 422,
};
const kinds = new Set<string>(Object.keys(statusByKind));

/** Server side: status, headers and body for an error (unknown errors are transient 500s). */
export function httpError(err: unknown): { status: number; headers: Record<string, string>; body: string } {
  if (err instanceof ToteError) {
    return {
      status: statusByKind[err.kind],
      headers: { [kindHeader]: err.kind, [reasonHeader]: err.reason, 'content-type': 'text/plain; charset=utf-8' },
      body: err.message,
    };
  }
  return {
    status: 500,
    headers: { [kindHeader]: 'transient', [reasonHeader]: 'InternalError', 'content-type': 'text/plain' },
    body: err instanceof Error ? err.message : String(err),
  };
}

/** The `Range: bytes=<n>-` offset; 0 without a Range header. */
export function parseRangeOffset(range: string | undefined): number {
  if (range === undefined) return 0;
  const m = /^bytes=(\d{1,15})-$/.exec(range.trim());
  if (!m) throw new ToteError('terminal', 'InvalidRange', `Range ${JSON.stringify(range)} is not bytes=<offset>-`);
  return Number(m[1]);
}

/** Longest error body read from a peer: a message, not a stream. */
const maxErrorBody = 16 * 1024;

export class HttpsBlobReader {
  readonly #host: string;
  readonly #port: number;
  readonly #agent: Agent;

  /** `address` is the source agent's host:port (the same port as its gRPC API). */
  constructor(address: string, tls: TlsMaterial, server: PeerIdentity) {
    const colon = address.lastIndexOf(':');
    this.#host = address.slice(0, colon).replace(/^\[|\]$/g, '');
    this.#port = Number(address.slice(colon + 1));
    this.#agent = new Agent({ keepAlive: true, ...tlsClientOptions(tls, server), ALPNProtocols: ['http/1.1'] });
  }

  /** The bytes of `digest` from `offset`, as they arrive. Failures are ToteErrors; a cut stream is transient. */
  async *read(
    args: { token: string; digest: string; offset?: number },
    options: { signal?: AbortSignal } = {},
  ): AsyncGenerator<Uint8Array> {
    const offset = args.offset ?? 0;
    const { length, socket, head } = await new Promise<{ length: number; socket: Duplex; head: Buffer }>(
      (resolve, reject) => {
        const req = request(
          {
            host: this.#host,
            port: this.#port,
            path: `${blobPathPrefix}${args.digest}`,
            method: 'GET',
            agent: this.#agent,
            headers: {
              authorization: `Bearer ${args.token}`,
              connection: 'Upgrade',
              upgrade: blobProtocol,
              ...(offset > 0 ? { range: `bytes=${offset}-` } : {}),
            },
            ...(options.signal ? { signal: options.signal } : {}),
          },
          (res) => {
            // Anything but the upgrade is a refusal (or a source that does not speak this protocol).
            errorFrom(res).then(reject, reject);
          },
        );
        req.on('upgrade', (res: IncomingMessage, upgraded: Duplex, first: Buffer) => {
          const announced = Number(res.headers[blobLengthHeader]);
          if (!Number.isSafeInteger(announced) || announced < 0) {
            upgraded.destroy();
            reject(
              new ToteError('integrity', 'BadBlobLength', `the source announced no valid length for ${args.digest}`),
            );
            return;
          }
          resolve({ length: announced, socket: upgraded, head: first });
        });
        req.on('error', (err) => reject(transportError(err, args.digest)));
        req.end();
      },
    );
    const abort = () => socket.destroy();
    options.signal?.addEventListener('abort', abort, { once: true });
    let received = 0;
    try {
      if (head.length > 0) {
        received += head.length;
        yield head;
      }
      // Bytes past the announced length are passed on: the target holds them against the planned size.
      for await (const chunk of socket) {
        received += (chunk as Buffer).length;
        yield chunk as Buffer;
      }
    } catch (err) {
      throw transportError(options.signal?.aborted ? (options.signal.reason ?? err) : err, args.digest);
    } finally {
      options.signal?.removeEventListener('abort', abort);
      socket.destroy();
    }
    if (received < length) {
      throw new ToteError(
        'transient',
        'PeerStreamCut',
        `the stream of ${args.digest} ended after ${received} of ${length} bytes`,
      );
    }
  }

  close(): void {
    this.#agent.destroy();
  }
}

function transportError(err: unknown, digest: string): ToteError {
  if (err instanceof ToteError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof Error && err.name === 'AbortError') {
    return new ToteError('transient', 'Cancelled', `reading ${digest} was cancelled`, { cause: err });
  }
  return new ToteError('transient', 'PeerStreamCut', `reading ${digest} from the source failed: ${message}`, {
    cause: err,
  });
}

async function errorFrom(res: IncomingMessage): Promise<ToteError> {
  const parts: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res) {
      size += (chunk as Buffer).length;
      if (size > maxErrorBody) break;
      parts.push(chunk as Buffer);
    }
  } catch {
    // The status and headers say enough.
  }
  res.destroy();
  const sentKind = res.headers[kindHeader];
  const kind = (typeof sentKind === 'string' && kinds.has(sentKind) ? sentKind : 'transient') as ErrorKind;
  const sentReason = res.headers[reasonHeader];
  const reason = typeof sentReason === 'string' && /^[A-Za-z]{1,64}$/.test(sentReason) ? sentReason : 'AgentHttpError';
  const body = Buffer.concat(parts).toString('utf8').slice(0, 1024);
  return new ToteError(kind, reason, `agent read blob: ${body || `HTTP ${res.statusCode}`}`);
}
