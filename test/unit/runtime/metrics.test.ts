import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../../src/runtime/clock.ts';
import { createRegistry, runtimeMetrics } from '../../../src/runtime/metrics.ts';
import { WorkQueue } from '../../../src/runtime/workqueue.ts';

/** The value of one series in the registry's text exposition, or undefined when the series is absent. */
async function sample(registry: ReturnType<typeof createRegistry>, series: string): Promise<number | undefined> {
  const text = await registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('runtime metrics', () => {
  it('pre-sets every reconcile result of a controller to 0', async () => {
    const registry = createRegistry({ defaultMetrics: false });
    runtimeMetrics(registry).registerController('salvagerecord');
    for (const result of ['success', 'error', 'requeue', 'requeue_after'])
      assert.equal(
        await sample(registry, `tote_reconcile_total{controller="salvagerecord",result="${result}"}`),
        0,
        result,
      );
    assert.equal(await sample(registry, 'tote_reconcile_errors_total{controller="salvagerecord"}'), 0);
  });

  it('creates the families once per registry (idempotent), separately per registry', () => {
    const r1 = createRegistry({ defaultMetrics: false });
    const r2 = createRegistry({ defaultMetrics: false });
    assert.equal(runtimeMetrics(r1), runtimeMetrics(r1));
    assert.notEqual(runtimeMetrics(r1), runtimeMetrics(r2));
    assert.doesNotThrow(() => runtimeMetrics(r2).registerController('x'));
  });

  it('includes default process metrics unless disabled', async () => {
    const text = await createRegistry().metrics();
    assert.match(text, /process_cpu_user_seconds_total/);
    assert.match(text, /nodejs_eventloop_lag_seconds/);
    assert.doesNotMatch(await createRegistry({ defaultMetrics: false }).metrics(), /process_cpu/);
  });

  it('reports work-queue depth, adds, retries and longest running', async () => {
    const registry = createRegistry({ defaultMetrics: false });
    const m = runtimeMetrics(registry);
    const clock = new ManualClock();
    const q = new WorkQueue({ name: 'pods', clock, metrics: m.queueMetrics('pods') });
    m.observeQueue(q);
    assert.equal(await sample(registry, 'tote_workqueue_depth{name="pods"}'), 0);
    q.add('a');
    q.add('b');
    q.add('a');
    assert.equal(await sample(registry, 'tote_workqueue_depth{name="pods"}'), 2);
    assert.equal(await sample(registry, 'tote_workqueue_adds_total{name="pods"}'), 2);
    await q.get();
    await clock.advance(2500);
    assert.equal(await sample(registry, 'tote_workqueue_longest_running_processor_seconds{name="pods"}'), 2.5);
    assert.equal(await sample(registry, 'tote_workqueue_depth{name="pods"}'), 1);
    q.addRateLimited('a');
    assert.equal(await sample(registry, 'tote_workqueue_retries_total{name="pods"}'), 1);
  });

  it('counts API requests by verb and code, and their latency by verb and resource', async () => {
    const registry = createRegistry({ defaultMetrics: false });
    const m = runtimeMetrics(registry);
    m.observeKubeRequest({ method: 'PUT', resource: 'salvagerecords/status', statusCode: 200, seconds: 0.04 });
    m.observeKubeRequest({ method: 'PUT', resource: 'salvagerecords/status', statusCode: 409, seconds: 0.3 });
    m.observeKubeRequest({ method: 'GET', resource: 'pods', statusCode: undefined, seconds: 30 });
    assert.equal(await sample(registry, 'tote_kube_requests_total{verb="PUT",code="200"}'), 1);
    assert.equal(await sample(registry, 'tote_kube_requests_total{verb="PUT",code="409"}'), 1);
    assert.equal(await sample(registry, 'tote_kube_requests_total{verb="GET",code="none"}'), 1);
    const put = 'verb="PUT",resource="salvagerecords/status"';
    assert.equal(await sample(registry, `tote_kube_request_duration_seconds_count{${put}}`), 2);
    assert.equal(await sample(registry, `tote_kube_request_duration_seconds_bucket{le="0.05",${put}}`), 1);
  });
});
