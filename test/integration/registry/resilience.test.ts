// Deadlines, retries and the plain-HTTP opt-in: a registry that never answers, and a real (plain HTTP) docker-registry
// behind a proxy that injects 503s and connection resets.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { isToteError } from '../../../src/api/errors.ts';
import { RegistryClient, RegistryMetrics } from '../../../src/registry/index.ts';
import { startRegistry } from '../../support/registry-process.ts';
import type { RunningRegistry } from '../../support/registry-process.ts';
import { buildImage, memorySource } from './image-fixtures.ts';

async function listen(server: http.Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  server.close();
  await once(server, 'close');
}

describe('deadlines', () => {
  let hanging: http.Server;
  let host: string;
  before(async () => {
    // Accepts connections and requests, never answers.
    hanging = http.createServer(() => undefined);
    host = await listen(hanging);
  });
  after(() => closeServer(hanging));

  test('a registry that hangs gives a transient timeout within the deadline', async () => {
    const client = new RegistryClient({ plainHttp: true });
    const started = performance.now();
    await assert.rejects(client.resolve(`${host}/some/image:v1`, { timeoutMs: 300 }), (err) => {
      assert.ok(isToteError(err, 'transient'), String(err));
      assert.equal(err.reason, 'RegistryTimeout');
      assert.match(err.message, /300ms/);
      return true;
    });
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 290 && elapsed < 2_000, `took ${elapsed}ms`);
    client.close();
  });

  test('a caller abort wins over the deadline and is rethrown as is', async () => {
    const client = new RegistryClient({ plainHttp: true });
    const controller = new AbortController();
    const pending = client.resolve(`${host}/some/image:v1`, { timeoutMs: 30_000, signal: controller.signal });
    controller.abort(new Error('shutting down'));
    await assert.rejects(pending, /shutting down/);
    client.close();
  });
});

describe('plain HTTP registry behind a faulty proxy', () => {
  let registry: RunningRegistry;
  let proxy: http.Server;
  let proxyHost: string;
  /** Requests to fail, by method: a count of 503s, then resets. */
  const faults = { status503: new Map<string, number>(), resets: new Map<string, number>() };
  const seen: string[] = [];

  before(async () => {
    registry = await startRegistry();
    proxy = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      const method = req.method ?? '';
      const fail503 = faults.status503.get(method) ?? 0;
      if (fail503 > 0) {
        faults.status503.set(method, fail503 - 1);
        req.resume();
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'injected' }] }));
        return;
      }
      const reset = faults.resets.get(method) ?? 0;
      if (reset > 0) {
        faults.resets.set(method, reset - 1);
        req.socket.destroy();
        return;
      }
      const upstream = http.request(
        { host: '127.0.0.1', port: registry.port, method, path: req.url, headers: req.headers },
        (up) => {
          // The registry's Location headers name its own port; rewrite them to keep traffic on the proxy.
          const headers = { ...up.headers };
          if (typeof headers.location === 'string')
            headers.location = headers.location.replace(registry.host, proxyHost);
          res.writeHead(up.statusCode ?? 502, headers);
          up.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    });
    proxyHost = await listen(proxy);
  });

  after(async () => {
    await closeServer(proxy);
    await registry?.stop();
  });

  test('plain HTTP is refused unless explicitly allowed', async () => {
    const client = new RegistryClient();
    // Without plainHttp the client speaks TLS to the plain HTTP port: the handshake fails and no request is read.
    await assert.rejects(client.resolve(`${proxyHost}/x/y:v1`), (err) => isToteError(err) && err.kind !== 'not-found');
    assert.ok(!seen.some((line) => line.includes('/v2/x/y')), seen.join('\n'));
    client.close();
  });

  test('retries 503s and connection resets with backoff, and the push still lands', async () => {
    const metricsRegistry = new Registry();
    const metrics = new RegistryMetrics(metricsRegistry);
    const delays: number[] = [];
    const client = new RegistryClient({
      plainHttp: true,
      metrics,
      retry: { attempts: 4, initialDelayMs: 100 },
      sleep: async (ms) => {
        delays.push(ms);
      },
    });
    faults.status503.set('HEAD', 2);
    faults.resets.set('PUT', 1);
    const image = buildImage({ seed: 70, layers: 2 });
    const ref = `${proxyHost}/flaky/app:v1`;
    const result = await client.push(ref, image.root, memorySource(image));
    assert.equal(result.digest, image.root.digest);
    assert.equal(faults.status503.get('HEAD'), 0);
    assert.equal(faults.resets.get('PUT'), 0);
    assert.equal(delays.length, 3);
    const retries = (await metricsRegistry.getSingleMetric('tote_registry_retries_total')!.get()).values;
    assert.equal(
      retries.reduce((n, v) => n + v.value, 0),
      3,
    );
    assert.equal((await client.resolve(ref)).digest, image.root.digest);
    client.close();
  });

  test('gives up after the last attempt with the transient error', async () => {
    const client = new RegistryClient({ plainHttp: true, retry: { attempts: 2 }, sleep: async () => undefined });
    faults.status503.set('HEAD', 10);
    const image = buildImage({ seed: 71, layers: 1 });
    await assert.rejects(client.push(`${proxyHost}/flaky/down:v1`, image.root, memorySource(image)), (err) => {
      assert.ok(isToteError(err, 'transient'), String(err));
      assert.match(err.message, /503/);
      return true;
    });
    faults.status503.set('HEAD', 0);
    client.close();
  });
});
