// HTTP endpoints for the kubelet and Prometheus: /healthz (liveness), /readyz (readiness), /metrics.
// Checks are named functions, reported like the API server's own (`?verbose` lists each with [+] or [-]), so a failing
// probe says which check failed. Endpoints may share one server or use two (probe and metrics addresses).

import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { errorMessage } from '../api/errors.ts';
import type { BindAddress } from './config/options.ts';
import { silentLogger } from './logging.ts';
import type { Logger } from './logging.ts';

/** A named health check: true/undefined = ok; false or a string (the reason) or a throw = failing. */
export type HealthCheck = () => boolean | string | void | Promise<boolean | string | void>;

export interface HealthServerOptions {
  /** Where to listen ("host:port", ":port"; port 0 picks a free one). */
  address: BindAddress;
  /** Served at /healthz: is the process alive (restart it if not)? */
  liveness?: Record<string, HealthCheck>;
  /** Served at /readyz: should it receive work (caches synced, leader election healthy)? */
  readiness?: Record<string, HealthCheck>;
  /** Served at /metrics when given. */
  registry?: Registry;
  logger?: Logger;
  /** Time a check may take before it counts as failed (default 5 s). */
  checkTimeoutMs?: number;
}

/** A started server; `port` is the real one (useful with port 0). */
export interface HealthServer {
  readonly server: Server;
  readonly host: string;
  readonly port: number;
  /** Adds or replaces a check after start (e.g. leader election once it exists). */
  addCheck(kind: 'liveness' | 'readiness', name: string, check: HealthCheck): void;
  /** Stops accepting connections and closes idle ones; resolves when closed. */
  close(): Promise<void>;
}

async function runChecks(
  checks: Record<string, HealthCheck>,
  timeoutMs: number,
): Promise<{ name: string; ok: boolean; reason?: string }[]> {
  return Promise.all(
    Object.entries(checks).map(async ([name, check]) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        const timeout = new Promise<string>((resolve) => {
          timer = setTimeout(() => resolve(`timed out after ${timeoutMs} ms`), timeoutMs);
          timer.unref();
        });
        const result = await Promise.race([Promise.resolve(check()), timeout]);
        if (result === false) return { name, ok: false, reason: 'failed' };
        if (typeof result === 'string') return { name, ok: false, reason: result };
        return { name, ok: true };
      } catch (err) {
        return { name, ok: false, reason: errorMessage(err) };
      } finally {
        clearTimeout(timer);
      }
    }),
  );
}

/** Starts the server; resolves once it is listening. */
export async function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  const log = (options.logger ?? silentLogger).child({ component: 'health-server' });
  const liveness: Record<string, HealthCheck> = { ping: () => true, ...options.liveness };
  const readiness: Record<string, HealthCheck> = { ping: () => true, ...options.readiness };
  const timeoutMs = options.checkTimeoutMs ?? 5000;

  const probe = async (checks: Record<string, HealthCheck>, url: URL, res: ServerResponse) => {
    const exclude = new Set(url.searchParams.getAll('exclude'));
    const selected = Object.fromEntries(Object.entries(checks).filter(([n]) => !exclude.has(n)));
    const results = await runChecks(selected, timeoutMs);
    const ok = results.every((r) => r.ok);
    const verbose = url.searchParams.has('verbose') || !ok;
    res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    if (!verbose) return res.end('ok\n');
    const lines = results.map((r) => (r.ok ? `[+]${r.name} ok` : `[-]${r.name} failed: ${r.reason}`));
    res.end(`${lines.join('\n')}\n${url.pathname.slice(1)} check ${ok ? 'passed' : 'failed'}\n`);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const path = url.pathname.replace(/\/+$/, '') || '/';
    if (path === '/healthz' || path === '/livez') return probe(liveness, url, res);
    if (path === '/readyz') return probe(readiness, url, res);
    // Single checks, as the API server offers: /readyz/informers.
    const single = /^\/(healthz|livez|readyz)\/([^/]+)$/.exec(path);
    if (single) {
      const checks = single[1] === 'readyz' ? readiness : liveness;
      const name = single[2] as string;
      const check = checks[name];
      if (!check) return void res.writeHead(404).end(`no check ${name}\n`);
      return probe({ [name]: check }, url, res);
    }
    if (path === '/metrics' && options.registry) {
      const body = await options.registry.metrics();
      res.writeHead(200, { 'content-type': options.registry.contentType });
      res.end(body);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error('request failed', { path: req.url, error: errorMessage(err) });
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  // Probes must not hold the process open or pile up: short timeouts.
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 5_000;

  const host = options.address.host;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.address.port, host === '' ? undefined : host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const info = server.address() as AddressInfo;
  log.info('listening', { address: `${info.address}:${info.port}` });

  return {
    server,
    host: info.address,
    port: info.port,
    addCheck(kind, name, check) {
      (kind === 'liveness' ? liveness : readiness)[name] = check;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeIdleConnections();
      }),
  };
}
