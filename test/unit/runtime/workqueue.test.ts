import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, settle } from '../../../src/runtime/clock.ts';
import {
  ExponentialBackoffRateLimiter,
  TokenBucketRateLimiter,
  WorkQueue,
  defaultRateLimiter,
} from '../../../src/runtime/workqueue.ts';

/** A queue on a manual clock, without an overall rate limit unless asked. */
function makeQueue(clock = new ManualClock(), options: { baseMs?: number; maxMs?: number } = {}) {
  return new WorkQueue({
    name: 'test',
    clock,
    rateLimiter: new ExponentialBackoffRateLimiter({ baseMs: options.baseMs ?? 5, maxMs: options.maxMs ?? 1000 }),
  });
}

/** A promise that the test resolves by hand. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

describe('WorkQueue', () => {
  it('de-duplicates keys added before they are taken', async () => {
    const q = makeQueue();
    q.add('a');
    q.add('b');
    q.add('a');
    q.add('a');
    assert.equal(q.length, 2);
    assert.equal(await q.get(), 'a');
    assert.equal(await q.get(), 'b');
    assert.equal(q.length, 0);
  });

  it('hands keys out in FIFO order', async () => {
    const q = makeQueue();
    for (const k of ['c', 'a', 'b']) q.add(k);
    assert.deepEqual([await q.get(), await q.get(), await q.get()], ['c', 'a', 'b']);
  });

  it('does not hand out a key while it is processing; re-adds it after done()', async () => {
    const q = makeQueue();
    q.add('a');
    const first = await q.get();
    assert.equal(first, 'a');
    q.add('a'); // changed while being processed
    assert.equal(q.length, 0, 'must not be queued while processing');
    let second: string | undefined;
    void q.get().then((k) => (second = k));
    await settle();
    assert.equal(second, undefined, 'a second worker must not get the same key');
    q.done('a');
    await settle();
    assert.equal(second, 'a', 'the re-added key runs again after done');
  });

  it('never runs one key on two workers at once, and loses no update', async () => {
    const q = makeQueue();
    const running = new Set<string>();
    const runs: string[] = [];
    let overlap = false;
    const gates = new Map<string, ReturnType<typeof gate>>();
    const loop = q.run(4, async (key) => {
      if (running.has(key)) overlap = true;
      running.add(key);
      runs.push(key);
      const g = gate();
      gates.set(key, g);
      await g.opened;
      running.delete(key);
    });
    q.add('x');
    q.add('y');
    await settle();
    assert.deepEqual(runs, ['x', 'y']);
    q.add('x'); // while x runs
    q.add('x');
    await settle();
    assert.deepEqual(runs, ['x', 'y'], 'x not started twice');
    gates.get('x')?.open();
    await settle();
    assert.deepEqual(runs, ['x', 'y', 'x'], 'x runs exactly once more');
    gates.get('x')?.open();
    gates.get('y')?.open();
    await q.shutdown({ drain: true });
    await loop;
    assert.equal(overlap, false);
  });

  it('addAfter delays by the clock, and the earliest pending time wins', async () => {
    const clock = new ManualClock();
    const q = makeQueue(clock);
    q.addAfter('a', 1000);
    q.addAfter('a', 300);
    q.addAfter('a', 5000);
    assert.equal(q.length, 0);
    assert.equal(q.delayedCount, 1);
    await clock.advance(299);
    assert.equal(q.length, 0);
    await clock.advance(1);
    assert.equal(q.length, 1);
    await clock.advance(10_000);
    assert.equal(q.length, 1, 'later delays were superseded');
  });

  it('backs off exponentially per key up to the cap, and forget() resets', async () => {
    const clock = new ManualClock();
    const q = makeQueue(clock, { baseMs: 5, maxMs: 100 });
    const delays: number[] = [];
    for (let i = 0; i < 7; i++) {
      const before = clock.now();
      q.addRateLimited('a');
      const wait = clock.nextTimerIn() ?? 0;
      await clock.advance(wait);
      assert.equal(await q.get(), 'a');
      q.done('a');
      delays.push(clock.now() - before);
    }
    assert.deepEqual(delays, [5, 10, 20, 40, 80, 100, 100]);
    assert.equal(q.numRequeues('a'), 7);
    q.forget('a');
    assert.equal(q.numRequeues('a'), 0);
    q.addRateLimited('a');
    assert.equal(clock.nextTimerIn(), 5);
  });

  it('keeps backoff separate per key', () => {
    const limiter = new ExponentialBackoffRateLimiter({ baseMs: 5, maxMs: 1_000_000 });
    assert.deepEqual([limiter.when('a'), limiter.when('a'), limiter.when('a')], [5, 10, 20]);
    assert.equal(limiter.when('b'), 5);
  });

  it('caps the backoff even after very many failures', () => {
    const limiter = new ExponentialBackoffRateLimiter({ baseMs: 5, maxMs: 1_000_000 });
    let last = 0;
    for (let i = 0; i < 2000; i++) last = limiter.when('a');
    assert.equal(last, 1_000_000);
  });

  it('limits the overall rate with a token bucket', async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucketRateLimiter({ qps: 10, burst: 3, clock });
    // The burst is free, then one token per 100 ms, reserved in order.
    assert.deepEqual(
      ['a', 'b', 'c', 'd', 'e'].map((k) => bucket.when(k)),
      [0, 0, 0, 100, 200],
    );
    await clock.advance(1000);
    // The debt is repaid and the bucket refilled (up to the burst only).
    assert.deepEqual(
      ['f', 'g', 'h', 'i'].map((k) => bucket.when(k)),
      [0, 0, 0, 100],
    );
  });

  it('default limiter takes the slower of per-key backoff and the bucket', () => {
    const clock = new ManualClock();
    const limiter = defaultRateLimiter({ baseDelayMs: 5, maxDelayMs: 1000, qps: 1, burst: 1, clock });
    assert.equal(limiter.when('a'), 5); // token free, per-key 5 ms
    assert.equal(limiter.when('b'), 1000); // bucket empty: 1 s for the next token
  });

  it('shutdown with drain lets workers finish the queued keys and waits for them', async () => {
    const q = makeQueue();
    const done: string[] = [];
    const g = gate();
    const loop = q.run(1, async (key) => {
      await g.opened;
      done.push(key);
    });
    for (const k of ['a', 'b', 'c']) q.add(k);
    await settle();
    let finished = false;
    const stopping = q.shutdown({ drain: true }).then(() => (finished = true));
    q.add('late');
    await settle();
    assert.equal(finished, false, 'waits for in-flight work');
    g.open();
    await stopping;
    await loop;
    assert.deepEqual(done, ['a', 'b', 'c'], 'queued keys drained, late key refused');
  });

  it('shutdown without drain drops queued keys, aborts the signal and waits only for in-flight ones', async () => {
    const clock = new ManualClock();
    const q = makeQueue(clock);
    const done: string[] = [];
    const g = gate();
    let aborted = false;
    const loop = q.run(1, async (key, signal) => {
      await g.opened;
      aborted = signal.aborted;
      done.push(key);
    });
    for (const k of ['a', 'b', 'c']) q.add(k);
    q.addAfter('d', 10);
    await settle();
    let finished = false;
    const stopping = q.shutdown({ drain: false }).then(() => (finished = true));
    await settle();
    assert.equal(finished, false, 'waits for the in-flight key');
    assert.equal(clock.pendingTimers, 0, 'delayed adds cancelled');
    g.open();
    await stopping;
    await loop;
    assert.deepEqual(done, ['a']);
    assert.equal(aborted, true);
  });

  it('releases idle workers at shutdown', async () => {
    const q = makeQueue();
    const loop = q.run(3, async () => {});
    await settle();
    await q.shutdown({ drain: true });
    await loop;
    assert.equal(await q.get(), undefined);
  });

  it('re-queues a key whose handler throws, rate-limited, and reports the error', async () => {
    const clock = new ManualClock();
    const errors: unknown[] = [];
    const q = new WorkQueue({
      name: 't',
      clock,
      rateLimiter: new ExponentialBackoffRateLimiter({ baseMs: 50, maxMs: 1000 }),
      onHandlerError: (_key, err) => errors.push(err),
    });
    let calls = 0;
    const loop = q.run(1, async () => {
      calls++;
      if (calls === 1) throw new Error('boom');
    });
    q.add('a');
    await settle();
    assert.equal(calls, 1);
    assert.equal(errors.length, 1);
    await clock.advance(49);
    assert.equal(calls, 1);
    await clock.advance(1);
    assert.equal(calls, 2);
    await q.shutdown({ drain: true });
    await loop;
  });

  it('reports how long the oldest in-flight key has run', async () => {
    const clock = new ManualClock();
    const q = makeQueue(clock);
    assert.equal(q.longestRunningMs(), 0);
    q.add('a');
    await q.get();
    await clock.advance(1500);
    assert.equal(q.longestRunningMs(), 1500);
    q.done('a');
    assert.equal(q.longestRunningMs(), 0);
  });
});
