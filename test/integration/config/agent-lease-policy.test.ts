// Per-node Lease rights, as the API server enforces them: an agent's token is bound to its node (the kubelet binds an
// agent pod's projected token to the pod, which names the node), and config/rbac/agent-lease-policy.yaml lets that
// identity write only its own node's registration Lease. Real kube-apiserver, real tokens, real writes.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isToteError } from '../../../src/api/index.ts';
import { KubeClient, loadKubeConfig, resources } from '../../../src/runtime/kube.ts';
import { ensureCluster, kubectl, repoRoot } from '../../support/cluster.ts';
import type { ClusterEnv } from '../../support/cluster.ts';
import { tempDir } from '../../support/temp-dirs.ts';

const namespace = 'tote-system';
const node = `lease-policy-${process.pid}`;

describe('agent Lease rights: each agent its own node’s Lease only', () => {
  let env: ClusterEnv;
  before(async () => {
    env = await ensureCluster();
    for (const args of [
      ['create', 'namespace', namespace],
      ['apply', '-k', join(repoRoot, 'config/rbac'), '-n', namespace],
      ['create', '-f', '-'],
    ]) {
      const input = JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: node } });
      const r = await kubectl(env, args, args[0] === 'create' && args[1] === '-f' ? { input } : {});
      assert.ok(r.code === 0 || /AlreadyExists/.test(r.stderr), r.stderr);
    }
  });
  after(async () => {
    await kubectl(env, ['delete', 'node', node, '--wait=false']);
  });

  /** A client authenticated as the agent ServiceAccount, its token bound to `boundNode` (or to nothing). */
  async function agentClient(boundNode?: string): Promise<KubeClient> {
    const args = ['create', 'token', 'tote-agent', '-n', namespace, '--duration=10m'];
    if (boundNode) args.push('--bound-object-kind=Node', `--bound-object-name=${boundNode}`);
    const token = await kubectl(env, args);
    assert.equal(token.code, 0, token.stderr);
    const admin = loadKubeConfig(env.kubeconfig);
    const file = join(tempDir('tote-agent-token-'), 'kubeconfig');
    writeFileSync(
      file,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server: admin.server, 'certificate-authority': env.caFile } }],
        users: [{ name: 'agent', user: { token: token.stdout.trim() } }],
        contexts: [{ name: 'c', context: { cluster: 'c', user: 'agent' } }],
        'current-context': 'c',
      }),
    );
    return new KubeClient(loadKubeConfig(file));
  }

  const lease = (name: string) => ({
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name, namespace },
    spec: { holderIdentity: name, leaseDurationSeconds: 60 },
  });
  const forbidden = (err: unknown) => isToteError(err, 'unauthorized') && /own|bound/.test(String(err));

  it('writes its own node’s Lease, and no other Lease, not even the leader’s', async () => {
    const agent = await agentClient(node);
    const own = await agent.create(resources.leases, lease(`tote-agent-${node}`));
    await agent.update(resources.leases, { ...own, spec: { ...own.spec, leaseDurationSeconds: 90 } });
    await assert.rejects(agent.create(resources.leases, lease(`tote-agent-${node}-other`)), forbidden);
    await assert.rejects(agent.create(resources.leases, lease('tote-agent-node-b-impostor')), forbidden);
    await assert.rejects(agent.create(resources.leases, lease('tote-controller-leader-impostor')), forbidden);
    assert.equal(await agent.delete(resources.leases, `tote-agent-${node}`, namespace), true);
  });

  it('a token bound to no node writes no Lease', async () => {
    const unbound = await agentClient();
    await assert.rejects(unbound.create(resources.leases, lease(`tote-agent-${node}`)), forbidden);
  });
});
