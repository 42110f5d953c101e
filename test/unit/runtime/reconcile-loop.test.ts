import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ToteError } from '../../../src/api/errors.ts';
import { chargeApiWait, detachFromApiWait } from '../../../src/runtime/api-wait.ts';
import { ManualClock, settle } from '../../../src/runtime/clock.ts';
import { createRegistry, runtimeMetrics } from '../../../src/runtime/metrics.ts';
import { classifyOutcome, runReconcileLoop } from '../../../src/runtime/reconcile-loop.ts';
import type { ReconcileResult } from '../../../src/runtime/reconcile-loop.ts';
import { ExponentialBackoffRateLimiter, WorkQueue } from '../../../src/runtime/workqueue.ts';

describe('classifyOutcome', () => {
  const cases: [string, Parameters<typeof classifyOutcome>[0], string, string, boolean][] = [
    ['nothing returned', { ok: true, result: undefined }, 'success', 'forget', false],
    ['requeueAfter', { ok: true, result: { requeueAfterMs: 500 } }, 'requeue_after', 'after', false],
    [
      'requeueAfter wins over requeue',
      { ok: true, result: { requeue: true, requeueAfterMs: 5 } },
      'requeue_after',
      'after',
      false,
    ],
    ['requeue', { ok: true, result: { requeue: true } }, 'requeue', 'rate-limited', false],
    ['conflict', { ok: false, error: new ToteError('conflict', 'Conflict', 'x') }, 'requeue', 'rate-limited', false],
    ['terminal', { ok: false, error: new ToteError('terminal', 'Invalid', 'x') }, 'error', 'forget', true],
    ['transient', { ok: false, error: new ToteError('transient', 'Down', 'x') }, 'error', 'rate-limited', true],
    ['plain error', { ok: false, error: new Error('x') }, 'error', 'rate-limited', true],
  ];
  for (const [what, outcome, label, action, isError] of cases)
    it(what, () => {
      const c = classifyOutcome(outcome);
      assert.deepEqual([c.label, c.action, c.isError], [label, action, isError]);
    });
});

describe('runReconcileLoop', () => {
  it('requeues by outcome and counts results', async () => {
    const clock = new ManualClock();
    const registry = createRegistry({ defaultMetrics: false });
    const metrics = runtimeMetrics(registry);
    const queue = new WorkQueue({ name: 'c', clock, rateLimiter: new ExponentialBackoffRateLimiter({ baseMs: 100 }) });
    const calls: string[] = [];
    const script: Record<string, (() => Promise<ReconcileResult | void>)[]> = {
      ok: [async () => undefined],
      later: [async () => ({ requeueAfterMs: 1000 }), async () => undefined],
      flaky: [
        async () => {
          throw new Error('boom');
        },
        async () => undefined,
      ],
      bad: [
        async () => {
          throw new ToteError('terminal', 'Invalid', 'no');
        },
      ],
    };
    const ids = new Set<string>();
    const loop = runReconcileLoop({
      name: 'c',
      queue,
      metrics,
      workers: 2,
      reconcile: async (key, ctx) => {
        calls.push(key);
        ids.add(ctx.reconcileId);
        const step = script[key]?.shift();
        assert.ok(step, `unexpected reconcile of ${key}`);
        return step();
      },
    });
    for (const k of Object.keys(script)) queue.add(k);
    await settle();
    assert.deepEqual(calls.sort(), ['bad', 'flaky', 'later', 'ok']);
    await clock.advance(100); // flaky's first backoff
    assert.equal(calls.filter((k) => k === 'flaky').length, 2);
    await clock.advance(900); // later's requeueAfter
    assert.equal(calls.filter((k) => k === 'later').length, 2);
    await clock.advance(60_000);
    assert.equal(calls.filter((k) => k === 'bad').length, 1, 'terminal errors are not retried');
    assert.equal(ids.size, calls.length, 'one reconcile id per reconcile');
    await queue.shutdown({ drain: true });
    await loop;
    const values = await metrics.reconcileTotal.get();
    const byResult = Object.fromEntries(values.values.map((v) => [v.labels.result, v.value]));
    assert.deepEqual(byResult, { success: 3, error: 2, requeue: 0, requeue_after: 1 });
    assert.equal((await metrics.reconcileErrors.get()).values[0]?.value, 2);
    assert.equal((await metrics.terminalReconcileErrors.get()).values[0]?.value, 1);
  });

  it("splits a reconcile's time into API wait and its own, not counting what it left running", async () => {
    const clock = new ManualClock();
    const registry = createRegistry({ defaultMetrics: false });
    const metrics = runtimeMetrics(registry);
    const queue = new WorkQueue({ name: 'c', clock });
    let nowMs = 0;
    let background: Promise<void> | undefined;
    const loop = runReconcileLoop({
      name: 'c',
      queue,
      metrics,
      now: () => nowMs,
      reconcile: async () => {
        await Promise.resolve();
        chargeApiWait(0.3); // a write that took 300 ms
        // Work left running (an Event being sent) waits for the API server too, but not on this reconcile's behalf.
        background = detachFromApiWait(async () => {
          await Promise.resolve();
          chargeApiWait(5);
        });
        await background;
        nowMs += 500;
      },
    });
    queue.add('k');
    await settle();
    await queue.shutdown({ drain: true });
    await loop;
    const sums = async (h: typeof metrics.reconcileDuration) =>
      (await h.get()).values.find((v) => v.metricName?.endsWith('_sum'))?.value;
    assert.equal(await sums(metrics.reconcileDuration), 0.5);
    assert.ok(Math.abs((await sums(metrics.reconcileOwnDuration))! - 0.2) < 1e-9, 'own share 500 - 300 ms');
  });
});
