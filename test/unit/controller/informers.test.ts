// What the controller's informer handlers enqueue (informers.ts): a policy's own status write is no reason to look at
// it, or at every stuck pod, again.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { SalvagePolicy } from '../../../src/api/index.ts';
import type { Caches, ControllerContext } from '../../../src/controller/context.ts';
import { wireHandlers } from '../../../src/controller/informers.ts';
import type { Queues } from '../../../src/controller/informers.ts';
import type { EventHandler } from '../../../src/runtime/informer.ts';
import type { WorkQueue } from '../../../src/runtime/workqueue.ts';
import { pod } from './factories.ts';

/** Informers that hold nothing but the handlers wired to them; queues that record what was added. */
function wired(stuckPods = [pod({ waiting: { reason: 'ErrImagePull' } })]) {
  const handlers = new Map<string, EventHandler<unknown>[]>();
  const cache = (name: string, objects: unknown[] = []) => ({
    addEventHandler: (h: EventHandler<unknown>) => handlers.set(name, [...(handlers.get(name) ?? []), h]),
    list: () => objects,
    byIndex: () => [],
  });
  const caches = Object.fromEntries(
    ['deployments', 'statefulSets', 'daemonSets', 'nodes', 'namespaces', 'policies', 'records', 'agentLeases'].map(
      (name) => [name, cache(name)],
    ),
  ) as unknown as Caches;
  (caches as unknown as Record<string, unknown>).pods = cache('pods', stuckPods);
  const added: string[] = [];
  const queue = (name: string) =>
    ({
      add: (key: string) => added.push(`${name} ${key}`),
      addAfter: (key: string) => added.push(`${name} ${key} later`),
    }) as unknown as WorkQueue;
  const queues: Queues = {
    pods: queue('pods'),
    records: queue('records'),
    policies: queue('policies'),
    protection: queue('protection'),
  };
  wireHandlers({} as ControllerContext, caches, queues, []);
  const policyUpdate = (old: SalvagePolicy, now: SalvagePolicy) => {
    for (const h of handlers.get('policies') ?? []) h.update?.(old, now);
  };
  return { added, policyUpdate };
}

const policy = (resourceVersion: string, extra: Partial<SalvagePolicy> = {}): SalvagePolicy => ({
  apiVersion: 'tote.dev/v1alpha1',
  kind: 'SalvagePolicy',
  metadata: { name: 'p', resourceVersion, generation: 1 },
  spec: { mode: 'Salvage' },
  ...extra,
});

describe('informer handlers: policies', () => {
  it('a write of the policy status alone enqueues nothing', () => {
    const w = wired();
    w.policyUpdate(policy('1'), policy('2', { status: { counters: { recordsActive: 3 } } as never }));
    assert.deepEqual(w.added, []);
  });

  it('a spec change enqueues the policy, its protection survey and the stuck pods', () => {
    const w = wired();
    w.policyUpdate(policy('1'), policy('2', { spec: { mode: 'DetectOnly' } }));
    assert.deepEqual(w.added.sort(), ['pods team/app-1', 'policies p', 'protection p']);
  });

  it('a resync (the same version again) still enqueues the policy', () => {
    const w = wired();
    w.policyUpdate(policy('1'), policy('1'));
    assert.ok(w.added.includes('policies p'), w.added.join(', '));
  });
});
