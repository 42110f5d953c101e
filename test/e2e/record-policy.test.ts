// A record acts with its policy's limits, backup target and credentials, so which policy governs a record matters as
// much as which pods are in scope: a hand-made record gets the policy in force in its namespace, and a record naming a
// policy that does not select its namespace is refused rather than given that policy's powers.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ensureCluster, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import { ensureTote } from '../support/tote.ts';
import { apply, lostImage, scopedPolicy, waitForRecords } from '../support/salvage.ts';
import type { TestImage } from '../support/images.ts';

let env: ClusterEnv;

const manualRecord = (namespace: string, image: TestImage, policy?: string) => ({
  apiVersion: 'tote.dev/v1alpha1',
  kind: 'SalvageRecord',
  metadata: { name: 'by-hand', namespace },
  spec: {
    imageRef: image.digestReference(env.sourceRegistry),
    digest: image.target.digest,
    targetNode: 'node-b',
    reason: 'Manual',
    ...(policy ? { policyRef: { name: policy } } : {}),
  },
});

describe('the policy a record acts under', () => {
  before(async () => {
    env = await ensureCluster();
    await ensureTote(env);
  });

  it('a hand-made record without policyRef gets the policy that selects its namespace (here DetectOnly)', async (t) => {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, { mode: 'DetectOnly' }, t);
    const image = await lostImage(env, { repository: `manual/${ns.name}`, layers: 1 }, ['node-a']);
    await apply(env, manualRecord(ns.name, image));
    const [record] = await waitForRecords(env, ns.name, 1, (r) =>
      ['Skipped', 'Completed', 'Failed', 'NotActionable'].includes(r.status?.phase ?? ''),
    );
    assert.equal(record?.status?.phase, 'Skipped', record?.status?.message);
    assert.match(record?.status?.message ?? '', /DetectOnly/);
  });

  it('a record naming a policy that does not select its namespace is refused, nothing moved', async (t) => {
    const mine = await testNamespace(env, t);
    const theirs = await testNamespace(env, t);
    const policy = await scopedPolicy(env, theirs, {}, t);
    const image = await lostImage(env, { repository: `manual/${mine.name}`, layers: 1 }, ['node-a']);
    await apply(env, manualRecord(mine.name, image, policy));
    const [record] = await waitForRecords(env, mine.name, 1, (r) =>
      ['Skipped', 'Completed', 'Failed', 'NotActionable'].includes(r.status?.phase ?? ''),
    );
    assert.equal(record?.status?.phase, 'NotActionable', record?.status?.message);
    assert.equal(record?.status?.conditions?.find((c) => c.type === 'Ready')?.reason, 'PolicyNotInScope');
    assert.equal(record?.status?.sourceNode, undefined, 'no transfer was started');
  });
});
