import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KubeEventRecorder } from '../../../src/controller/notify/events.ts';
import type { EventTarget } from '../../../src/controller/notify/events.ts';
import { ManualClock } from '../../../src/runtime/clock.ts';
import type { KubeClient } from '../../../src/runtime/kube.ts';
import type { Logger } from '../../../src/runtime/logging.ts';

const target: EventTarget = { apiVersion: 'v1', kind: 'Pod', name: 'app-1', namespace: 'team', uid: 'pod-1' };

/** An API client whose writes wait until the test lets them finish, recording the order they were made in. */
function fakeKube() {
  const calls: string[] = [];
  const pending: (() => void)[] = [];
  const write = (what: string) => () => {
    calls.push(what);
    return new Promise<void>((resolve) => pending.push(resolve));
  };
  const kube = { create: write('create'), mergePatch: write('patch') } as unknown as KubeClient;
  /** Lets every write finish, and the ones queued behind them, until nothing waits (no timers involved). */
  const releaseAll = async () => {
    do {
      pending.splice(0).forEach((resolve) => resolve());
      await new Promise((resolve) => setImmediate(resolve));
    } while (pending.length > 0);
  };

  return { kube, calls, pending, releaseAll };
}

const warnings: string[] = [];
const log = {
  warn: (m: string) => warnings.push(m),
  info: () => undefined,
  debug: () => undefined,
} as unknown as Logger;

describe('KubeEventRecorder: events in the background, a series in order', () => {
  it('a repeat queued behind its first send counts into that Event instead of creating another', async () => {
    const { kube, calls, pending, releaseAll } = fakeKube();
    const recorder = new KubeEventRecorder(kube, { clock: new ManualClock(), log, instance: 'test' });
    const first = recorder.record(target, 'Normal', 'Salvaged', 'copied');
    const second = recorder.record(target, 'Normal', 'Salvaged', 'copied');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(calls, ['create'], 'the second waits for the first');
    assert.equal(pending.length, 1);
    await releaseAll();
    await Promise.all([first, second]);
    assert.deepEqual(calls, ['create', 'patch']);
  });

  it('a repeat of a reason on the same object is one series whatever its note, as client-go keys it', async () => {
    const { kube, calls, releaseAll } = fakeKube();
    const recorder = new KubeEventRecorder(kube, { clock: new ManualClock(), log, instance: 'test' });
    const sends = [
      recorder.record(target, 'Warning', 'TransferFailed', 'attempt 1 from node-a failed'),
      recorder.record(target, 'Warning', 'TransferFailed', 'attempt 2 from node-c failed'),
      recorder.record({ ...target, uid: 'pod-2', name: 'app-2' }, 'Warning', 'TransferFailed', 'attempt 1'),
      recorder.record(target, 'Warning', 'TransferFailed', 'attempt 3', 'Protect'),
    ];
    await releaseAll();
    await Promise.all(sends);
    assert.deepEqual(
      [...calls].sort(),
      ['create', 'create', 'create', 'patch'],
      'one series for the first object, its own Event for the other object and for the other action',
    );
  });

  it('sends up to four different Events at once; the rest wait for a free slot', async () => {
    const { kube, calls, pending, releaseAll } = fakeKube();
    const recorder = new KubeEventRecorder(kube, { clock: new ManualClock(), log, instance: 'test' });
    const sends = Array.from({ length: 6 }, (_, i) => recorder.record(target, 'Normal', `Step${i}`, 'note'));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(pending.length, 4, 'four in flight');
    pending.shift()!();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(calls.length, 5, 'one finished, the fifth took its slot');
    assert.equal(pending.length, 4);
    await releaseAll();
    await Promise.all(sends);
    assert.deepEqual(calls, Array(6).fill('create'));
  });

  it('a repeat waits for its first even while other Events go out', async () => {
    const { kube, calls, pending, releaseAll } = fakeKube();
    const recorder = new KubeEventRecorder(kube, { clock: new ManualClock(), log, instance: 'test' });
    const first = recorder.record(target, 'Warning', 'Salvageable', 'found');
    const other = recorder.record(target, 'Normal', 'Salvaged', 'copied');
    const repeat = recorder.record(target, 'Warning', 'Salvageable', 'found');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(calls, ['create', 'create'], 'the repeat is not sent before its first exists');
    pending.shift()!();
    await first;
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(calls, ['create', 'create', 'patch'], 'then it counts into the first');
    await releaseAll();
    await Promise.all([other, repeat]);
  });

  it('drops new Events beyond 1,000 waiting, and says so', async () => {
    const { kube, calls, releaseAll } = fakeKube();
    warnings.length = 0;
    const recorder = new KubeEventRecorder(kube, { clock: new ManualClock(), log, instance: 'test' });
    const sends = Array.from({ length: 1_005 }, (_, i) => recorder.record(target, 'Normal', `Step${i}`, 'note'));
    assert.equal(warnings.length, 5, '5 dropped');
    await releaseAll();
    await Promise.all(sends);
    assert.equal(calls.length, 1_000);
  });
});
