// HTTP to the API server over node:https: JSON requests and streaming watches, with keep-alive connection pools.
//
// Why not @kubernetes/client-node's transport: 2.0 builds a new undici Agent per request (a TLS context parsed again
// and a new connection with a full handshake per call; a burst of a thousand writes left 140 MB of native memory
// behind) and re-reads the kubeconfig's files each time, and loading it costs the process ~29 MB of RSS before the
// first request (undici's WebAssembly parser, 1.9 MB of bundled code). tote needs JSON in and out, a watch stream and
// the kubeconfig's credentials; this is that, on the https module Node already carries.
//
// Connections: one pool for requests (bounded, so a burst queues instead of opening hundreds of TLS sessions) and one
// for watches (a watch holds its connection for minutes and must never wait behind requests). Both are replaced when
// the TLS material changes on disk (certificate rotation); the old pools are closed once their watches have had time
// to roll over. Concurrency: every call is independent; the only shared state is the pool pair, swapped atomically.

import http from 'node:http';
import type { IncomingMessage } from 'node:http';
import https from 'node:https';
import { chargeApiWait } from './api-wait.ts';
import type { KubeConfig, KubeCredentials } from './kubeconfig.ts';

/** A non-2xx answer from the API server: its status code, body (a Status object, usually) and headers. */
export class KubeHttpError extends Error {
  readonly statusCode: number;
  readonly body: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;

  constructor(statusCode: number, body: string, headers: IncomingMessage['headers']) {
    super(`HTTP ${statusCode}`);
    this.name = 'KubeHttpError';
    this.statusCode = statusCode;
    this.body = body;
    this.headers = headers;
  }
}

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export type Query = Readonly<Record<string, string | undefined>>;

/** One watch event as the API server streams it. */
export interface RawWatchEvent {
  type: string;
  object: unknown;
}

export interface KubeHttpOptions {
  /** Connections for requests (watches have their own pool). */
  maxSockets?: number;
  /** A watch that delivers nothing (not even a bookmark) for this long is presumed dead and ended (default 2 min). */
  watchInactivityMs?: number;
  /** Told of every finished request (not watches), for latency metrics. */
  observeRequest?: (sample: RequestSample) => void;
}

/** One finished request: what it was, how it ended (HTTP status, or undefined when no answer came) and how long. */
export interface RequestSample {
  method: HttpMethod;
  /** The resource's plural (with subresource: `salvagerecords/status`), from the path; `other` for anything else. */
  resource: string;
  statusCode: number | undefined;
  seconds: number;
}

interface Pools {
  identity: string;
  requests: http.Agent;
  watches: http.Agent;
}

/** How long replaced pools stay open: longer than the 5–10 minute server-side watch timeout the informers ask for. */
const retireAfterMs = 11 * 60_000;

export class KubeHttp {
  readonly #config: KubeConfig;
  readonly #secure: boolean;
  readonly #maxSockets: number;
  readonly #watchInactivityMs: number;
  readonly #observe: ((sample: RequestSample) => void) | undefined;
  #pools: Pools | undefined;

  constructor(config: KubeConfig, options: KubeHttpOptions = {}) {
    this.#config = config;
    this.#secure = new URL(config.server).protocol === 'https:';
    this.#maxSockets = options.maxSockets ?? 32;
    this.#watchInactivityMs = options.watchInactivityMs ?? 120_000;
    this.#observe = options.observeRequest;
  }

  /**
   * Sends one request and parses the JSON answer. Throws KubeHttpError for a non-2xx answer, the socket's error for a
   * network failure, an AbortError when signal fires. A 401 with refreshable credentials (exec plugin, token file) is
   * retried once with fresh ones.
   */
  async request(
    method: HttpMethod,
    path: string,
    query: Query,
    body: { type: string; data: unknown } | undefined,
    signal: AbortSignal | undefined,
  ): Promise<unknown> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body.data));
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#send(method, path, query, body?.type, payload, signal);
      } catch (err) {
        if (attempt > 0 || !(err instanceof KubeHttpError) || err.statusCode !== 401 || !this.#config.refreshable)
          throw err;
        this.#config.invalidate();
      }
    }
  }

  async #send(
    method: HttpMethod,
    path: string,
    query: Query,
    contentType: string | undefined,
    payload: Buffer | undefined,
    signal: AbortSignal | undefined,
  ): Promise<unknown> {
    signal?.throwIfAborted();
    const credentials = await this.#config.credentials();
    const headers: Record<string, string> = { accept: 'application/json' };
    if (credentials.authorization) headers.authorization = credentials.authorization;
    if (payload) {
      headers['content-type'] = contentType ?? 'application/json';
      headers['content-length'] = String(payload.length);
    }
    const started = performance.now();
    let statusCode: number | undefined;
    try {
      const res = await this.#open(method, path, query, headers, credentials, 'requests', signal, payload);
      const text = await readAll(res);
      statusCode = res.statusCode!;
      if (statusCode < 200 || statusCode >= 300) throw new KubeHttpError(statusCode, text, res.headers);
      return text ? JSON.parse(text) : undefined;
    } finally {
      const seconds = (performance.now() - started) / 1000;
      chargeApiWait(seconds);
      this.#observe?.({ method, resource: resourceOfPath(path), statusCode, seconds });
    }
  }

  /**
   * Starts a watch (the caller puts watch parameters in query; watch=true is added). onEvent gets each event in
   * order; onDone is called once when the stream ends: undefined for a normal close (the server's timeout), else the
   * error (KubeHttpError for a refused watch, a TimeoutError DOMException after watchInactivityMs of silence). The
   * returned function aborts the watch, after which onDone is not called.
   */
  async watch(
    path: string,
    query: Query,
    onEvent: (event: RawWatchEvent) => void,
    onDone: (err?: unknown) => void,
  ): Promise<() => void> {
    const aborter = new AbortController();
    let finished = false;
    const done = (err?: unknown) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      aborter.abort();
      onDone(err);
    };
    const timer = setTimeout(
      () => done(new DOMException(`no watch event for ${this.#watchInactivityMs} ms`, 'TimeoutError')),
      this.#watchInactivityMs,
    );
    timer.unref();
    const stop = () => {
      finished = true;
      clearTimeout(timer);
      aborter.abort();
    };
    try {
      const credentials = await this.#config.credentials();
      const headers: Record<string, string> = { accept: 'application/json' };
      if (credentials.authorization) headers.authorization = credentials.authorization;
      const res = await this.#open(
        'GET',
        path,
        { ...query, watch: 'true' },
        headers,
        credentials,
        'watches',
        aborter.signal,
      );
      if (res.statusCode !== 200) {
        if (res.statusCode === 401 && this.#config.refreshable) this.#config.invalidate();
        done(new KubeHttpError(res.statusCode!, await readAll(res), res.headers));
        return stop;
      }
      res.setEncoding('utf8');
      let partial = '';
      res.on('data', (chunk: string) => {
        timer.refresh();
        partial += chunk;
        let newline: number;
        while (!finished && (newline = partial.indexOf('\n')) !== -1) {
          const line = partial.slice(0, newline);
          partial = partial.slice(newline + 1);
          if (!line.trim()) continue;
          let event: RawWatchEvent;
          try {
            event = JSON.parse(line) as RawWatchEvent;
          } catch {
            done(new Error(`watch ${path}: the server sent a line that is not JSON`));
            return;
          }
          onEvent(event);
        }
      });
      res.on('end', () => done());
      res.on('error', (err) => done(err));
      res.on('close', () => done(res.complete ? undefined : new Error(`watch ${path}: connection closed mid-stream`)));
    } catch (err) {
      if (!finished) done(err);
    }
    return stop;
  }

  #open(
    method: HttpMethod,
    path: string,
    query: Query,
    headers: Record<string, string>,
    credentials: KubeCredentials,
    pool: 'requests' | 'watches',
    signal: AbortSignal | undefined,
    payload?: Buffer,
  ): Promise<IncomingMessage> {
    const url = new URL(this.#config.server + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
    const agent = this.#poolsFor(credentials)[pool];
    const send = this.#secure ? https.request : http.request;
    return new Promise((resolve, reject) => {
      const req = send(url, { method, headers, agent, signal }, resolve);
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** The pools for this TLS material; new ones (and the old ones retired) when it changed. */
  #poolsFor(credentials: KubeCredentials): Pools {
    if (this.#pools?.identity === credentials.tlsIdentity) return this.#pools;
    const old = this.#pools;
    if (old) setTimeout(() => (old.requests.destroy(), old.watches.destroy()), retireAfterMs).unref();
    const tls: https.AgentOptions = {
      ca: credentials.ca,
      cert: credentials.cert,
      key: credentials.key,
      rejectUnauthorized: credentials.verifyServer,
      servername: credentials.serverName,
    };
    const Agent = this.#secure ? https.Agent : http.Agent;
    this.#pools = {
      identity: credentials.tlsIdentity,
      requests: new Agent({ ...tls, keepAlive: true, maxSockets: this.#maxSockets, scheduling: 'lifo' }),
      watches: new Agent({ ...tls, keepAlive: false }),
    };
    return this.#pools;
  }

  /** Closes every connection (process shutdown, tests). */
  close(): void {
    this.#pools?.requests.destroy();
    this.#pools?.watches.destroy();
    this.#pools = undefined;
  }
}

/**
 * The resource a REST path names: /api/v1/namespaces/ns/pods/name → pods, /apis/g/v/namespaces/ns/x/name/status →
 * x/status, /api/v1/nodes → nodes. Bounded to what the path's shape allows, so it is safe as a metric label.
 */
export function resourceOfPath(path: string): string {
  const segments = path
    .split('?')[0]!
    .split('/')
    .filter((s) => s !== '');
  const rest = segments[0] === 'api' ? segments.slice(2) : segments[0] === 'apis' ? segments.slice(3) : undefined;
  if (!rest || rest.length === 0) return 'other';
  // namespaces/<ns>/<plural>/... is a namespaced resource; namespaces or namespaces/<ns> alone is the namespace itself.
  const named = rest[0] === 'namespaces' && rest.length >= 3 ? rest.slice(2) : rest;
  const [plural, , subresource] = named;
  return subresource ? `${plural}/${subresource}` : plural!;
}

function ignoreError(): void {}

/**
 * The whole body as text. The listeners come off once it is read: a keep-alive socket keeps its last request, and
 * through it this response, alive until its next use, and a listener left on would keep the body with them (a 2 MB
 * page of a pod list, per pooled connection, was measured held that way).
 */
export function readAll(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const onData = (chunk: Buffer) => chunks.push(chunk);
    const settle = (err?: Error) => {
      // A late error on a finished response has nowhere to go; a module-level no-op holds nothing.
      res.off('data', onData).off('end', settle).off('error', settle).on('error', ignoreError);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks).toString('utf8'));
    };
    res.on('data', onData).on('end', settle).on('error', settle);
  });
}
