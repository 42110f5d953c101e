// Scope follows the namespace: a pod already stuck in a namespace no policy selects is salvaged as soon as the
// namespace is labelled into a policy's scope, without waiting for a periodic resync (10 min by default, far beyond
// this test's deadline).
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ensureCluster, kubectl, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import { ensureTote } from '../support/tote.ts';
import { apply, deployment, lostImage, waitForRecords, waitForRunningPods } from '../support/salvage.ts';
import { podsPath, waitForAny, waitingReason } from '../support/wait.ts';
import type { V1Pod } from '@kubernetes/client-node';

let env: ClusterEnv;

describe('scope follows namespace labels', () => {
  before(async () => {
    env = await ensureCluster();
    await ensureTote(env);
  });

  it('salvages a pod stuck before its namespace was labelled into scope', async (t) => {
    const ns = await testNamespace(env, t);
    const scope = randomBytes(4).toString('hex');
    const policy = `p-relabel-${scope}`;
    await apply(env, {
      apiVersion: 'tote.dev/v1alpha1',
      kind: 'SalvagePolicy',
      metadata: { name: policy },
      spec: { namespaceSelector: { matchLabels: { 'tote.dev/test-scope': scope } } },
    });
    t.after(async () => {
      await kubectl(env, ['delete', 'salvagepolicy', policy, '--wait=false']);
    });
    const image = await lostImage(
      env,
      { repository: `relabel/${ns.name}`, tag: 'v1', layers: 1, layerSize: 64 * 1024 },
      ['node-a'],
    );
    await deployment(env, ns.name, 'app', image.reference(env.sourceRegistry), ['node-b']);
    await waitForAny<V1Pod>(
      env,
      podsPath(ns.name),
      (p) => ['ErrImagePull', 'ImagePullBackOff'].includes(waitingReason(p) ?? ''),
      {
        labelSelector: 'app=app',
        what: 'the pod stuck before the namespace is in scope',
      },
    );

    const labelled = await kubectl(env, ['label', 'namespace', ns.name, `tote.dev/test-scope=${scope}`]);
    assert.equal(labelled.code, 0, labelled.stderr);

    const [record] = await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Completed', {
      timeoutMs: 90_000,
    });
    assert.equal(record?.spec.policyRef?.name, policy);
    await waitForRunningPods(env, ns.name, 'app', 1);
  });
});
