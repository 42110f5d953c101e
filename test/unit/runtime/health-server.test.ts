import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseBindAddress } from '../../../src/runtime/config/options.ts';
import { startHealthServer } from '../../../src/runtime/health-server.ts';
import { createRegistry, runtimeMetrics } from '../../../src/runtime/metrics.ts';

describe('health server', () => {
  it('serves /healthz, /readyz with named checks, and /metrics', async (t) => {
    const registry = createRegistry({ defaultMetrics: false });
    runtimeMetrics(registry).registerController('demo');
    let synced = false;
    const server = await startHealthServer({
      address: parseBindAddress('127.0.0.1:0')!,
      readiness: { informers: () => (synced ? true : 'pods not synced') },
      registry,
    });
    t.after(() => server.close());
    const get = async (path: string) => {
      const res = await fetch(`http://127.0.0.1:${server.port}${path}`);
      return { status: res.status, body: await res.text() };
    };
    assert.deepEqual(await get('/healthz'), { status: 200, body: 'ok\n' });
    const notReady = await get('/readyz');
    assert.equal(notReady.status, 503);
    assert.match(notReady.body, /\[-\]informers failed: pods not synced/);
    synced = true;
    assert.equal((await get('/readyz')).status, 200);
    assert.match((await get('/readyz?verbose')).body, /\[\+\]informers ok/);
    server.addCheck('readiness', 'leader-election', () => false);
    assert.equal((await get('/readyz')).status, 503);
    assert.equal((await get('/readyz?exclude=leader-election')).status, 200);
    assert.equal((await get('/readyz/informers')).status, 200);
    const metrics = await get('/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /tote_reconcile_total\{controller="demo",result="success"\} 0/);
    assert.equal((await get('/nope')).status, 404);
  });
});
