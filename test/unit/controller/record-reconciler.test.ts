// The record reconciler's bookkeeping around decide(): what its metrics count, and the transfer slots it observes. Its agents, caches and API server are
// stand-ins holding one record; the decisions themselves are record-machine.test.ts's.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Node } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import type { SalvageRecord } from '../../../src/api/index.ts';
import type { ControllerContext } from '../../../src/controller/context.ts';
import { LookupTracker } from '../../../src/controller/lookups.ts';
import { controllerMetrics } from '../../../src/controller/metrics.ts';
import { OperationTracker } from '../../../src/controller/operations.ts';
import { reconcileRecord } from '../../../src/controller/record/record-reconciler.ts';
import { defaultMachineSettings } from '../../../src/controller/record/record-machine.ts';
import { ManualClock, settle } from '../../../src/runtime/clock.ts';
import { silentLogger } from '../../../src/runtime/logging.ts';
import type { ReconcileContext } from '../../../src/runtime/reconcile-loop.ts';
import { digest, record } from './factories.ts';

const node = (name: string): V1Node => ({
  metadata: { name, labels: { 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64' } },
});

/** A context around one record whose image is complete on node-a, with every transfer slot of its policy taken. */
function slotsTaken(
  start: SalvageRecord,
  others: SalvageRecord[] = [],
  options: { slotsFree?: boolean; importFails?: boolean } = {},
) {
  const clock = new ManualClock();
  const registry = new Registry();
  const metrics = controllerMetrics(registry);
  let current = start;
  const enqueued: string[] = [];
  /** The nodes whose cached answers were dropped, and the (digest, node) no longer counted as received. */
  const invalidated: string[] = [];
  const forgotten: string[] = [];
  const nodes = [node('node-a'), node('node-b')];
  const imports = new OperationTracker<never>({ notify: () => undefined, clock });
  // Both of the policy's slots (maxConcurrentTransfers defaults to 2) held by transfers that never end.
  for (const uid of options.slotsFree ? [] : ['other-1', 'other-2'])
    imports.start({ uid, key: `team/${uid}`, tags: { policy: '' }, run: () => new Promise<never>(() => undefined) });
  const c = {
    clock,
    log: silentLogger,
    metrics,
    caches: {
      records: { get: () => current, list: () => [current, ...others] },
      nodes: { getByName: (n: string) => nodes.find((x) => x.metadata?.name === n), list: () => nodes },
      pods: { byIndex: () => [], getByName: () => undefined },
      policies: { getByName: () => undefined, list: () => [] },
      namespaces: { getByName: () => undefined },
    },
    agents: {
      alive: () => new Map(nodes.map((n) => [n.metadata?.name ?? '', {}])),
      holderHints: () => [],
      // An agent whose every import succeeds at once (or fails at once: the source went away).
      client: () => ({
        import: async () => {
          if (options.importFails) throw new Error('connect ECONNREFUSED (the source agent is gone)');
          return { bytesTotal: 1024, bytesTransferred: 1024 };
        },
      }),
      receivedBy: () => new Set<string>(),
      noteHolder: () => undefined,
      invalidate: (n: string) => invalidated.push(n),
      forgetReceived: (d: string, n: string) => forgotten.push(`${d}@${n}`),
      fanOut: <T>(_key: string, run: () => Promise<T>) => run(),
      image: async () => undefined,
      imageEverywhere: async (asked: string[]) => ({
        answers: new Map(asked.filter((n) => n === 'node-a').map((n) => [n, { complete: true, size: 1024 }])),
        failed: new Map(),
      }),
    },
    imports,
    lookups: new LookupTracker({ notify: () => undefined, clock }),
    kube: {
      updateStatus: async (_r: unknown, obj: SalvageRecord) => {
        current = obj;
        return obj;
      },
    },
    events: { record: () => undefined },
    notifier: { notify: () => undefined },
    machine: defaultMachineSettings,
    enqueuePolicy: () => undefined,
    signToken: () => 'token',
    enqueueRecord: (key: string) => enqueued.push(key),
  } as unknown as ControllerContext;
  const ctx: ReconcileContext = { log: silentLogger, reconcileId: 'test', signal: new AbortController().signal };
  /** One reconcile, again once the lookup it started has answered. */
  const reconcile = async () => {
    const result = await reconcileRecord(c, 'team/r', ctx);
    if (result !== undefined) return result;
    await settle();
    return reconcileRecord(c, 'team/r', ctx);
  };
  const salvageable = async () => (await metrics.salvageable.get()).values[0]?.value ?? 0;
  return { clock, reconcile, salvageable, current: () => current, imports, enqueued, metrics, invalidated, forgotten };
}

describe('record reconciler metrics', () => {
  it('counts a salvageable incident once while its record waits for a transfer slot and asks again', async () => {
    const t = slotsTaken(record({ phase: 'Locating', digest }, { digest }));
    for (let round = 0; round < 3; round++) {
      const result = await t.reconcile();
      assert.equal(t.current().status?.phase, 'Locating');
      assert.match(t.current().status?.message ?? '', /waiting for a transfer slot/);
      assert.equal(result?.requeueAfterMs, 5_000);
      await t.clock.advance(5_000);
    }
    assert.equal(await t.salvageable(), 1);
  });
});

describe('record reconciler transfer slots', () => {
  it('an evacuation does not wait for a transfer slot: it goes ahead of every other transfer', async () => {
    const evacuation = record({ phase: 'Locating', digest }, { digest, purpose: 'Protect', reason: 'Evacuation' });
    delete evacuation.spec.podRef;
    const t = slotsTaken(evacuation);
    await t.reconcile();
    assert.equal(t.current().status?.phase, 'Transferring', t.current().status?.message);
    assert.equal(t.current().status?.sourceNode, 'node-a');
  });
});

describe('record reconciler: a finished transfer frees its source', () => {
  it('wakes the records of the same image waiting in Locating for a free holder, and no others', async () => {
    const named = (name: string, phase: NonNullable<SalvageRecord['status']>['phase'], d = digest): SalvageRecord => {
      const r = record({ phase, digest: d }, { digest: d });
      r.metadata = { ...r.metadata, name, uid: `uid-${name}` };
      return r;
    };
    const others = [
      named('waiting', 'Locating'),
      named('waiting-for-another-image', 'Locating', `sha256:${'e'.repeat(64)}`),
      named('done', 'Completed'),
    ];
    const t = slotsTaken(
      record({ phase: 'Transferring', digest, sourceNode: 'node-a', attempts: 1 }, { digest }),
      others,
      { slotsFree: true },
    );
    await t.reconcile(); // starts the transfer, which succeeds at once, and reads its outcome
    await settle();
    assert.notEqual(t.current().status?.phase, 'Transferring', 'the transfer finished');
    assert.deepEqual(t.enqueued, ['team/waiting']);
  });
});

describe('record reconciler: one decision through several phases', () => {
  it('counts the salvage when a finished transfer goes on through Restarting to Completed in one write', async () => {
    const t = slotsTaken(record({ phase: 'Locating', digest }, { digest }), [], { slotsFree: true });
    await t.reconcile(); // locates, then writes Transferring and starts the transfer, which succeeds at once
    assert.equal(t.current().status?.phase, 'Transferring');
    await settle();
    await t.reconcile();
    const history = (t.current().status?.history ?? []).map((h) => h.phase);
    assert.equal(t.current().status?.phase, 'Completed', history.join(' → '));
    assert.deepEqual(history.slice(-2), ['Restarting', 'Completed']);
    assert.equal((await t.metrics.salvageSuccesses.get()).values[0]?.value ?? 0, 1);
  });
});

describe('record reconciler: a failed transfer', () => {
  it('has the source asked again before the retry, and no longer counts it as a node that received the image', async () => {
    const t = slotsTaken(record({ phase: 'Locating', digest }, { digest }), [], { slotsFree: true, importFails: true });
    await t.reconcile(); // locates node-a, writes Transferring and starts the transfer, which fails at once
    await settle();
    // What was cached about node-a ("complete") would send every retry back to it; the next locate asks it again.
    assert.ok(t.invalidated.includes('node-a'), `invalidated: ${t.invalidated.join(', ')}`);
    assert.deepEqual(t.forgotten, [`${digest}@node-a`]);
  });
});
