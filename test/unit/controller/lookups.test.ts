import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LookupTracker } from '../../../src/controller/lookups.ts';
import { ManualClock, settle } from '../../../src/runtime/clock.ts';

/** A tracker whose lookups finish when the test says so, counting runs and re-enqueues. */
function setup(maxAgeMs = 5_000) {
  const clock = new ManualClock();
  const notified: string[] = [];
  const tracker = new LookupTracker({ notify: (key) => notified.push(key), clock, maxAgeMs });
  const runs: { kind: string; signal: AbortSignal; finish: (value: string) => void; fail: (err: Error) => void }[] = [];
  const take = (kind: string, uid = 'uid-1') =>
    tracker.take<string>({
      uid,
      key: `team/${uid}`,
      kind,
      run: (signal) =>
        new Promise<string>((resolve, reject) => runs.push({ kind, signal, finish: resolve, fail: reject })),
    });
  return { clock, notified, tracker, runs, take };
}

describe('lookup tracker', () => {
  it('starts a lookup once, re-enqueues the record when it finishes, and hands the result over once', async () => {
    const { notified, runs, take, tracker } = setup();
    assert.equal(take('resolve'), undefined);
    assert.equal(take('resolve'), undefined);
    assert.equal(runs.length, 1);
    assert.equal(tracker.running, 1);

    runs[0]?.finish('sha256:a');
    await settle();
    assert.deepEqual(notified, ['team/uid-1']);
    assert.deepEqual(take('resolve'), { value: 'sha256:a' });

    // Taken means forgotten: the next attempt asks again.
    assert.equal(take('resolve'), undefined);
    assert.equal(runs.length, 2);
  });

  it('never hands one kind of lookup to another: asking for another kind abandons the first', async () => {
    const { runs, take } = setup();
    take('resolve');
    assert.equal(take('locate sha256:a'), undefined);
    assert.equal(runs[0]?.signal.aborted, true);
    runs[0]?.finish('sha256:stale');
    runs[1]?.finish('located');
    await settle();
    assert.deepEqual(take('locate sha256:a'), { value: 'located' });
    assert.equal(take('resolve'), undefined);
    assert.equal(runs.length, 3);
  });

  it('discards a result older than maxAgeMs and looks up again', async () => {
    const { clock, runs, take } = setup(5_000);
    take('target sha256:a');
    runs[0]?.finish('absent');
    await settle();
    await clock.advance(6_000);
    assert.equal(take('target sha256:a'), undefined);
    assert.equal(runs.length, 2);
    runs[1]?.finish('complete');
    await settle();
    assert.deepEqual(take('target sha256:a'), { value: 'complete' });
  });

  it('throws a failed lookup once, then runs it again', async () => {
    const { runs, take } = setup();
    take('resolve');
    runs[0]?.fail(new Error('boom'));
    await settle();
    assert.throws(() => take('resolve'), /boom/);
    assert.equal(take('resolve'), undefined);
    assert.equal(runs.length, 2);
  });

  it('keeps records apart, and cancelAll aborts everything', () => {
    const { runs, take, tracker } = setup();
    take('resolve', 'uid-1');
    take('resolve', 'uid-2');
    assert.equal(runs.length, 2);
    tracker.cancelAll();
    assert.ok(runs.every((r) => r.signal.aborted));
    assert.equal(tracker.running, 0);
  });
});
