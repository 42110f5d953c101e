// The TTL cleaner's deletions against the real API server: it decides on cached records, so a record that changed
// after the cache saw it (reopened because a pod needs the image again) must survive the pass that read the old copy.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ensureCluster, testNamespace } from '../../support/cluster.ts';
import type { ClusterEnv } from '../../support/cluster.ts';
import { isToteError, SalvageRecordResource } from '../../../src/api/index.ts';
import type { SalvageRecord } from '../../../src/api/index.ts';
import { KubeClient, loadKubeConfig } from '../../../src/runtime/kube.ts';
import { pruneExpiredRecords } from '../../../src/controller/record/ttl-cleaner.ts';
import type { ControllerContext } from '../../../src/controller/context.ts';

const dayAgo = new Date(Date.now() - 24 * 3_600_000).toISOString();
// A policy only this cleaner knows (the running controller's own cleaner applies the 168h default to these records).
const shortTtl = { metadata: { name: `ttl-cleaner-${process.pid}` }, spec: { recordTTL: '1h' } };

/** The cleaner's view of the world: the records its cache holds, the real API server to delete through. */
function cleanerContext(
  kube: KubeClient,
  cached: SalvageRecord[],
  logged: string[],
  policies: object[] = [shortTtl],
): ControllerContext {
  const log = { info: (m: string) => logged.push(m), warn: (m: string) => logged.push(m) };
  return {
    kube,
    clock: { now: () => Date.now() },
    caches: { policies: { list: () => policies }, records: { list: () => cached } },
    metrics: { recordsPruned: { inc: () => undefined } },
    log,
  } as unknown as ControllerContext;
}

describe('TTL cleaner deletions (real API server)', () => {
  let env: ClusterEnv;
  let kube: KubeClient;
  before(async () => {
    env = await ensureCluster();
    kube = new KubeClient(loadKubeConfig(env.kubeconfig));
  });

  async function finishedRecord(namespace: string, name: string): Promise<SalvageRecord> {
    const created = await kube.create(SalvageRecordResource, {
      apiVersion: 'tote.dev/v1alpha1',
      kind: 'SalvageRecord',
      metadata: { name, namespace },
      spec: {
        imageRef: 'registry.example.com/app:1',
        targetNode: 'node-b',
        policyRef: { name: shortTtl.metadata.name },
      },
    } as SalvageRecord);
    return setStatus(namespace, created.metadata?.name ?? name, { phase: 'Completed', completedAt: dayAgo });
  }

  /** Writes a status over whatever the running controller wrote meanwhile (it reconciles these records too). */
  async function setStatus(namespace: string, name: string, status: SalvageRecord['status']): Promise<SalvageRecord> {
    for (let attempt = 0; ; attempt++) {
      const current = await kube.get<SalvageRecord>(SalvageRecordResource, name, namespace);
      try {
        return await kube.updateStatus(SalvageRecordResource, { ...current, status });
      } catch (err) {
        if (!isToteError(err, 'conflict') || attempt >= 10) throw err;
      }
    }
  }

  it('spares a record that changed since the cache read it, and deletes one that did not', async (t) => {
    const ns = await testNamespace(env, t);
    const stale = await finishedRecord(ns.name, 'reopened');
    await finishedRecord(ns.name, 'expired');
    // A pod needed the image again: the record reopened after the cleaner's cache took its copy.
    await setStatus(ns.name, 'reopened', { phase: 'Resolving' });
    const unchanged = await kube.get<SalvageRecord>(SalvageRecordResource, 'expired', ns.name);

    const logged: string[] = [];
    const deleted = await pruneExpiredRecords(cleanerContext(kube, [stale, unchanged], logged));

    assert.equal(deleted, 1);
    const left = await kube.get<SalvageRecord>(SalvageRecordResource, 'reopened', ns.name);
    assert.equal(left.metadata?.uid, stale.metadata?.uid, 'the reopened record is still there');
    await assert.rejects(kube.get(SalvageRecordResource, 'expired', ns.name), (err) => isToteError(err, 'not-found'));
    assert.ok(
      logged.some((m) => /changed since it was read/.test(m)),
      logged.join('\n'),
    );
  });

  it('keeps the records of a policy it cannot read and still prunes the others', async (t) => {
    const ns = await testNamespace(env, t);
    const unreadable = {
      metadata: { name: `ttl-unreadable-${process.pid}` },
      spec: { limits: { maxImageSize: '100m' } },
    };
    await finishedRecord(ns.name, 'expired');
    const underBadPolicy = await kube.create(SalvageRecordResource, {
      apiVersion: 'tote.dev/v1alpha1',
      kind: 'SalvageRecord',
      metadata: { name: 'kept', namespace: ns.name },
      spec: {
        imageRef: 'registry.example.com/app:1',
        targetNode: 'node-b',
        policyRef: { name: unreadable.metadata.name },
      },
    } as SalvageRecord);
    await setStatus(ns.name, 'kept', { phase: 'Completed', completedAt: dayAgo });
    const cached = [
      await kube.get<SalvageRecord>(SalvageRecordResource, 'expired', ns.name),
      await kube.get<SalvageRecord>(SalvageRecordResource, 'kept', ns.name),
    ];
    const logged: string[] = [];
    const context = cleanerContext(kube, cached, logged, [shortTtl, unreadable]);

    assert.equal(await pruneExpiredRecords(context), 1);
    await assert.rejects(kube.get(SalvageRecordResource, 'expired', ns.name), (err) => isToteError(err, 'not-found'));
    const kept = await kube.get<SalvageRecord>(SalvageRecordResource, 'kept', ns.name);
    assert.equal(kept.metadata?.uid, underBadPolicy.metadata?.uid);
    assert.ok(
      logged.some((m) => /policy unreadable/.test(m)),
      logged.join('\n'),
    );
  });
});
