// GitOps health on objects the controller really wrote: `kubectl wait` reads the policy's Ready and a failed record's
// kstatus Stalled condition as they are, and the Argo CD health checks in config/argocd, run by Lua 5.1 on those same
// objects, call the policy Healthy and the record Degraded.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import type { SalvageRecord } from '../../src/api/index.ts';
import { ensureCluster, kubectl, repoRoot, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import { runHealthScript } from '../support/lua.ts';
import { apply, scopedPolicy, waitForRecords } from '../support/salvage.ts';
import { ensureTote } from '../support/tote.ts';

let env: ClusterEnv;

const getJson = async (args: string[]) => {
  const result = await kubectl(env, ['get', ...args, '-o', 'json']);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as unknown;
};

describe('GitOps health of real objects', () => {
  before(async () => {
    env = await ensureCluster();
    await ensureTote(env);
  });

  it('kubectl wait and the Argo CD checks read a Ready policy and a Stalled record', async (t) => {
    const ns = await testNamespace(env, t);
    const policy = await scopedPolicy(env, ns, {}, t);
    const ready = await kubectl(env, ['wait', `salvagepolicy/${policy}`, '--for=condition=Ready', '--timeout=60s']);
    assert.equal(ready.code, 0, ready.stderr);

    // An image no registry and no node has: the record ends NotActionable, which kstatus calls Stalled.
    await apply(env, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'nowhere', namespace: ns.name },
      spec: { nodeName: env.nodes[0], containers: [{ name: 'app', image: `${env.sourceRegistry}/gone/${ns.name}:1` }] },
    });
    const [record] = await waitForRecords(env, ns.name, 1, (r) => r.spec.podRef?.name === 'nowhere');
    const name = record?.metadata?.name ?? '';
    const stalled = await kubectl(env, [
      'wait',
      `salvagerecord/${name}`,
      `--namespace=${ns.name}`,
      '--for=condition=Stalled',
      '--timeout=120s',
    ]);
    assert.equal(stalled.code, 0, stalled.stderr);

    const written = (await getJson(['salvagerecord', name, `--namespace=${ns.name}`])) as SalvageRecord;
    assert.equal(written.status?.phase, 'NotActionable');
    assert.equal(
      written.status?.conditions?.some((c) => c.type === 'Reconciling'),
      false,
      'no longer Reconciling',
    );
    const recordHealth = runHealthScript(join(repoRoot, 'config/argocd/salvagerecord-health.lua'), written);
    assert.equal(recordHealth.status, 'Degraded');
    assert.match(recordHealth.message, /^NotActionable: /);
    const policyHealth = runHealthScript(
      join(repoRoot, 'config/argocd/salvagepolicy-health.lua'),
      await getJson(['salvagepolicy', policy]),
    );
    assert.equal(policyHealth.status, 'Healthy');
  });
});
