// `kubectl tote` as a user runs it: kubectl itself finds the program on PATH under the name kubectl-tote and runs it
// against the local cluster with tote's controller and agents running. status reports the leader and every agent;
// why explains a stuck pod in scope (its policy and the record the controller made) and one out of scope; salvage
// creates the record a person would write, which the controller takes up.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { SalvageRecord } from '../../../src/api/index.ts';
import type { StatusReport } from '../../../src/cmd/plugin/status.ts';
import type { ContainerVerdict } from '../../../src/cmd/plugin/why.ts';
import { ensureCluster, repoRoot, testNamespace } from '../../support/cluster.ts';
import type { ClusterEnv, TestNamespace } from '../../support/cluster.ts';
import { apply, recordsPath, scopedPolicy, waitForRecords } from '../../support/salvage.ts';
import { ensureTote } from '../../support/tote.ts';
import { podsPath, waitForObject } from '../../support/wait.ts';

let env: ClusterEnv;
let pluginDir: string;

/** `kubectl tote ARGS` with the plugin on PATH, as after `npm install -g` or a krew install. */
function kubectlTote(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const path = [pluginDir, join(repoRoot, 'node_modules/.bin'), process.env.PATH].join(':');
  return new Promise((resolve) => {
    execFile(
      env.kubectl,
      ['tote', ...args],
      { env: { ...process.env, PATH: path, KUBECONFIG: env.kubeconfig }, timeout: 60_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** A pod pinned to the first node whose image no registry and no node has: it stays in ErrImagePull. */
async function stuckPod(ns: TestNamespace, name: string): Promise<void> {
  await apply(env, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns.name },
    spec: {
      nodeName: env.nodes[0],
      containers: [
        { name: 'app', image: `${env.sourceRegistry}/plugin/${ns.name}:1`, imagePullPolicy: 'IfNotPresent' },
      ],
    },
  });
  await waitForObject<{
    metadata: object;
    status?: { containerStatuses?: { state?: { waiting?: { reason?: string } } }[] };
  }>(
    env,
    podsPath(ns.name),
    name,
    (p) => /ErrImagePull|ImagePullBackOff/.test(p?.status?.containerStatuses?.[0]?.state?.waiting?.reason ?? ''),
    { what: `pod ${name} stuck on its image` },
  );
}

describe('kubectl tote', () => {
  before(async () => {
    env = await ensureCluster();
    await ensureTote(env);
    pluginDir = mkdtempSync(join(tmpdir(), 'kubectl-tote-'));
    symlinkSync(join(repoRoot, 'src/cmd/tote.ts'), join(pluginDir, 'kubectl-tote'));
  });
  after(() => rmSync(pluginDir, { recursive: true, force: true }));

  it('kubectl finds the plugin and its help says kubectl tote', async () => {
    const { code, stdout } = await kubectlTote(['--help']);
    assert.equal(code, 0);
    assert.match(stdout, /^usage: kubectl tote <command>/);
    for (const command of ['status', 'why', 'salvage', 'doctor']) assert.match(stdout, new RegExp(`\\n  ${command} `));
  });

  it('status: the leader and every node’s agent, alive', async () => {
    const { code, stdout, stderr } = await kubectlTote(['status', '-o', 'json']);
    assert.equal(code, 0, stderr);
    const report = JSON.parse(stdout) as StatusReport;
    assert.equal(report.controller.alive, true, JSON.stringify(report.controller));
    assert.deepEqual(
      report.agents.map((a) => [a.node, a.alive]),
      env.nodes.map((n) => [n, true]),
    );
    const table = await kubectlTote(['status']);
    assert.match(table.stdout, new RegExp(`Agents: ${env.nodes.length}/${env.nodes.length} alive`));
  });

  it('why: a stuck pod in scope names its policy, the record the controller made, and what comes next', async (t) => {
    const ns = await testNamespace(env, t);
    const policy = await scopedPolicy(env, ns, { mode: 'DetectOnly' }, t);
    await stuckPod(ns, 'lost');
    const [made] = await waitForRecords(
      env,
      ns.name,
      1,
      (r) => r.spec.podRef?.name === 'lost' && r.status?.phase !== undefined,
    );
    const { code, stdout, stderr } = await kubectlTote(['why', 'lost', '-n', ns.name, '-o', 'json']);
    assert.equal(code, 0, stderr);
    const [verdict] = JSON.parse(stdout) as ContainerVerdict[];
    assert.match(verdict?.stuck?.reason ?? '', /ErrImagePull|ImagePullBackOff/);
    assert.equal(verdict?.inScope, true);
    assert.deepEqual(verdict?.policy, { name: policy, mode: 'DetectOnly' });
    assert.equal(verdict?.record?.name, made?.metadata?.name);
    assert.ok(verdict?.next.length, 'says what happens next');
    const table = await kubectlTote(['why', 'lost', `--namespace=${ns.name}`]);
    assert.match(table.stdout, new RegExp(`scope: +in scope, SalvagePolicy ${policy} \\(DetectOnly\\)`));
    assert.match(table.stdout, new RegExp(`record: ${made?.metadata?.name}`));
  });

  it('why: a stuck pod no policy selects is out of scope, and tote leaves it alone', async (t) => {
    const ns = await testNamespace(env, t);
    await stuckPod(ns, 'alone');
    const { code, stdout, stderr } = await kubectlTote(['why', 'alone', '-n', ns.name, '-o', 'json']);
    assert.equal(code, 0, stderr);
    const [verdict] = JSON.parse(stdout) as ContainerVerdict[];
    assert.equal(verdict?.inScope, false);
    assert.match(verdict?.scope ?? '', /no SalvagePolicy selects this pod/);
    assert.equal(verdict?.record, undefined);
  });

  it('why: a pod that does not exist is an error naming it', async () => {
    const { code, stderr } = await kubectlTote(['why', 'no-such-pod', '-n', 'default']);
    assert.equal(code, 1);
    assert.match(stderr, /pod no-such-pod not found in namespace default/);
  });

  it('salvage: creates the record by hand (reason Manual) and the controller takes it up', async (t) => {
    const ns = await testNamespace(env, t);
    await stuckPod(ns, 'ask');
    const { code, stdout, stderr } = await kubectlTote(['salvage', 'ask', '-n', ns.name, '-o', 'json']);
    assert.equal(code, 0, stderr);
    const created = JSON.parse(stdout) as SalvageRecord;
    assert.equal(created.spec.reason, 'Manual');
    assert.equal(created.spec.targetNode, env.nodes[0]);
    assert.equal(created.spec.podRef?.name, 'ask');
    const taken = await waitForObject<SalvageRecord & { metadata: object }>(
      env,
      recordsPath(ns.name),
      created.metadata?.name ?? '',
      (r) => r?.status?.phase !== undefined,
      { what: 'the hand-made record taken up by the controller' },
    );
    assert.ok(taken?.status?.history?.length, 'the controller wrote its history');
    const again = await kubectlTote(['salvage', 'ask', '-n', ns.name]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /already exists/);
  });
});
