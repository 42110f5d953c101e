// A small HTTP layer over node:http/https. Built-in fetch cannot take a per-client CA without the undici package
// (which tote does not depend on), and we need streamed request bodies with exact Content-Length for blob uploads, so
// this uses node:http directly. Every request has a deadline (AbortSignal.timeout) combined with the caller's signal.
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ToteError } from '../api/errors.ts';
import { errorFromTransport } from './errors.ts';

/** How to reach registries: TLS trust and whether plain HTTP is allowed. */
export interface TransportOptions {
  /** PEM CA certificate(s) to trust; when given they replace Node's default roots (like curl --cacert). */
  readonly ca?: string | Buffer | ReadonlyArray<string | Buffer>;
  /** Skip TLS verification. For tests and emergencies only; credentials may leak to an impostor. */
  readonly insecureSkipVerify?: boolean;
  /**
   * Talk plain HTTP (`http://`) to the registry and token servers. Off by default: it must be asked for explicitly,
   * since credentials then travel in clear text.
   */
  readonly plainHttp?: boolean;
  /** User-Agent header. */
  readonly userAgent?: string;
}

/** One HTTP request. */
export interface HttpRequest {
  readonly method: string;
  readonly url: URL;
  readonly headers?: Record<string, string>;
  /** A buffer, or a stream whose length the caller has put in Content-Length. */
  readonly body?: Uint8Array | AsyncIterable<Uint8Array>;
  /** Deadline for the whole exchange (sending the body and reading the answer's headers). */
  readonly timeoutMs: number;
  /** Caller cancellation; its reason is rethrown as is. */
  readonly signal?: AbortSignal;
  /** Words for error messages, e.g. `HEAD manifest docker.io/library/nginx:1.27`. Never includes credentials. */
  readonly what: string;
}

/** The answer; its body must be consumed (text/bytes) or discarded so that the socket is reused. */
export interface HttpResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  /** Reads the body as text (at most `limit` bytes, default 1 MiB; more is an integrity error). */
  text(limit?: number): Promise<string>;
  /** Reads the body as bytes (at most `limit`, default 4 MiB). */
  bytes(limit?: number): Promise<Buffer>;
  /** Throws the body away. */
  discard(): Promise<void>;
}

export const defaultUserAgent = 'tote-registry-client';

/** Sends requests with one keep-alive agent per scheme, configured once. */
export class HttpTransport {
  readonly plainHttp: boolean;
  readonly #httpsAgent: https.Agent;
  readonly #httpAgent: http.Agent;
  readonly #userAgent: string;

  constructor(options: TransportOptions = {}) {
    this.plainHttp = options.plainHttp ?? false;
    this.#userAgent = options.userAgent ?? defaultUserAgent;
    this.#httpsAgent = new https.Agent({
      keepAlive: true,
      ...(options.ca !== undefined ? { ca: options.ca as string | Buffer | Array<string | Buffer> } : {}),
      rejectUnauthorized: !(options.insecureSkipVerify ?? false),
    });
    this.#httpAgent = new http.Agent({ keepAlive: true });
  }

  /** The scheme used for registry API calls. */
  get scheme(): 'http' | 'https' {
    return this.plainHttp ? 'http' : 'https';
  }

  /** Closes idle sockets; in-flight requests finish. */
  close(): void {
    this.#httpsAgent.destroy();
    this.#httpAgent.destroy();
  }

  /**
   * Sends a request. Resolves with the answer whatever its status; rejects with a ToteError for transport failures
   * (transient `RegistryTimeout` when the deadline passes, `RegistryUnreachable` on resets, terminal `RegistryTLSError`),
   * or with the error a streamed body threw.
   */
  async request(req: HttpRequest): Promise<HttpResponse> {
    const secure = req.url.protocol === 'https:';
    if (!secure && req.url.protocol !== 'http:') {
      throw new ToteError('terminal', 'RegistryBadURL', `${req.what}: unsupported URL scheme ${req.url.protocol}`);
    }
    if (!secure && !this.plainHttp) {
      throw new ToteError(
        'terminal',
        'PlainHTTPNotAllowed',
        `${req.what}: refusing plain HTTP to ${req.url.host}; allow it explicitly (plainHttp) if this registry has no TLS`,
      );
    }
    const timeout = AbortSignal.timeout(req.timeoutMs);
    const signal = req.signal !== undefined ? AbortSignal.any([timeout, req.signal]) : timeout;
    signal.throwIfAborted();
    const headers: Record<string, string> = { 'user-agent': this.#userAgent, ...req.headers };
    const module = secure ? https : http;
    const clientRequest = module.request(req.url, {
      method: req.method,
      headers,
      agent: secure ? this.#httpsAgent : this.#httpAgent,
      signal,
    });
    const converted = (err: unknown): unknown => {
      if (req.signal?.aborted === true) return req.signal.reason;
      if (timeout.aborted) {
        return new ToteError(
          'transient',
          'RegistryTimeout',
          `${req.what}: no answer from ${req.url.host} within ${req.timeoutMs}ms`,
          { cause: err },
        );
      }
      return errorFromTransport(err, req.what);
    };
    const answered = new Promise<http.IncomingMessage>((resolve, reject) => {
      clientRequest.once('response', resolve);
      clientRequest.once('error', reject);
    });
    let bodyError: unknown;
    let sent: Promise<void> = Promise.resolve();
    if (req.body === undefined) {
      clientRequest.end();
    } else if (req.body instanceof Uint8Array) {
      clientRequest.end(req.body);
    } else {
      // A source that throws (e.g. a digest mismatch) destroys the request; remember why, to report that and not the
      // resulting socket error.
      const source = req.body;
      sent = pipeline(Readable.from(source, { objectMode: false }), clientRequest).catch((err: unknown) => {
        bodyError = err;
      });
    }
    let message: http.IncomingMessage;
    try {
      message = await answered;
    } catch (err) {
      await sent;
      throw converted(bodyError ?? err);
    }
    // An early error answer (401, 413…) may cut the upload short; that is not a failure of its own.
    if ((message.statusCode ?? 0) < 400) {
      await sent;
      if (bodyError !== undefined) throw converted(bodyError);
    } else {
      sent.catch(() => undefined);
    }
    return wrapResponse(message, req, converted);
  }
}

function wrapResponse(
  message: http.IncomingMessage,
  req: HttpRequest,
  converted: (err: unknown) => unknown,
): HttpResponse {
  const read = async (limit: number): Promise<Buffer> => {
    const parts: Buffer[] = [];
    let total = 0;
    try {
      for await (const chunk of message) {
        const buf = chunk as Buffer;
        total += buf.length;
        if (total > limit) {
          message.destroy();
          throw new ToteError('integrity', 'RegistryAnswerTooLarge', `${req.what}: answer larger than ${limit} bytes`);
        }
        parts.push(buf);
      }
    } catch (err) {
      throw converted(err);
    }
    return Buffer.concat(parts);
  };
  return {
    status: message.statusCode ?? 0,
    headers: message.headers,
    text: async (limit = 1 << 20) => (await read(limit)).toString('utf8'),
    bytes: (limit = 4 << 20) => read(limit),
    discard: async () => {
      try {
        message.resume();
        await new Promise<void>((resolve) => {
          if (message.complete) resolve();
          message.once('end', resolve);
          message.once('close', resolve);
        });
      } catch {
        // Discarding never fails the caller.
      }
    },
  };
}

/** The first value of a header. */
export function header(headers: http.IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

/** Every value of a header that may repeat (WWW-Authenticate). */
export function headerValues(headers: http.IncomingHttpHeaders, name: string): string[] {
  const value = headers[name.toLowerCase()];
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}
