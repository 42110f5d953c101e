// The controller process dies or hands over: a controller killed mid-transfer is replaced and the next one completes
// the same record, the agent resuming what had arrived; with two controllers only the Lease holder reconciles, and
// when it stops the standby takes the Lease and salvages. Each test leaves exactly one controller (instance 0) running.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ensureCluster, kubectl, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import { ensureTote, runningProcess, startController, stopProcess, toteNamespace } from '../support/tote.ts';
import type { ToteDeployment, ToteProcess } from '../support/tote.ts';
import {
  deployment,
  lostImage,
  recordsPath,
  scopedPolicy,
  waitForRecords,
  waitForRunningPods,
} from '../support/salvage.ts';
import { waitForObject } from '../support/wait.ts';
import type { V1Lease } from '@kubernetes/client-node';
import type { SalvageRecord } from '../../src/api/index.ts';

let env: ClusterEnv;
let tote: ToteDeployment;
const leaseName = 'tote-controller-leader';

/** Sum of tote_reconcile_total{controller="records"} over results, from a controller's /metrics. */
async function recordReconciles(proc: ToteProcess): Promise<number> {
  const text = await (await fetch(`${proc.metricsUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('tote_reconcile_total{') && line.includes('controller="records"')) {
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

async function leaseHolder(): Promise<string> {
  const r = await kubectl(env, [
    'get',
    'lease',
    leaseName,
    '-n',
    toteNamespace,
    '-o',
    'jsonpath={.spec.holderIdentity}',
  ]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

/** The controller process whose pod name the Lease holder identity carries (`<pod-name>_<random>`). */
const holderIs = (holder: string, proc: ToteProcess) => holder.startsWith(`${proc.name}_`);

async function salvage(t: { name: string; after: (fn: () => Promise<void>) => void }, spec = {}, size = 64 * 1024) {
  const ns = await testNamespace(env, t);
  await scopedPolicy(env, ns, spec, t);
  const image = await lostImage(env, { repository: `failover/${ns.name}`, layers: 3, layerSize: size }, ['node-a']);
  await deployment(env, ns.name, 'app', image.reference(env.sourceRegistry), ['node-b']);
  return { ns, image };
}

describe('controller failover', () => {
  before(async () => {
    env = await ensureCluster();
    tote = await ensureTote(env);
  });
  after(async () => {
    // Whatever happened, leave the one default controller running for the next tests.
    const extra = runningProcess(tote.paths, 'controller-b');
    await ensureTote(env);
    if (extra) await stopProcess(tote.paths, extra);
  });

  it('a controller killed while Transferring: the next one completes the same record, the agent resuming', async (t) => {
    // ~12 MiB at 2 MiB/s: the transfer takes seconds, long enough to kill the controller in the middle.
    const { ns, image } = await salvage(t, { limits: { bandwidthPerTransfer: '2Mi' } }, 4 * 1024 * 1024);
    const midway = await waitForRecords(
      env,
      ns.name,
      1,
      (r) => r.status?.phase === 'Transferring' && (r.status.progress?.transferredBytes ?? 0) > 0,
      { what: 'a record Transferring with bytes moved' },
    );
    const before = midway[0];
    assert.ok(before?.metadata?.uid);
    const controller = runningProcess(tote.paths, 'controller-0');
    assert.ok(controller, 'controller-0 runs');
    await stopProcess(tote.paths, controller, 'SIGKILL');
    await startController(env, tote.paths);

    const done = await waitForObject<SalvageRecord & { metadata: object }>(
      env,
      recordsPath(ns.name),
      before.metadata.name ?? '',
      (r) => r === undefined || r.status?.phase === 'Completed' || r.status?.phase === 'Failed',
      { timeoutMs: 120_000, what: 'the record to finish under the new controller' },
    );
    assert.ok(done);
    assert.equal(done.metadata?.uid, before.metadata.uid, 'the same record');
    assert.equal(done.status?.phase, 'Completed', done.status?.message);
    assert.equal(done.status?.attempts, 1, 'a resumed attempt, not a retry');
    const total = image.platforms[0]?.layers.reduce((n, l) => n + l.size, 0) ?? 0;
    const progress = done.status?.progress;
    assert.ok(
      (progress?.presentBytes ?? 0) > 0 && (progress?.transferredBytes ?? total) < total,
      `the second run found bytes already there and did not send everything again: ${JSON.stringify(progress)}`,
    );
    await waitForRunningPods(env, ns.name, 'app', 1);
  });

  it('two controllers: only the Lease holder reconciles; when it stops the standby takes over', async (t) => {
    const first = await startController(env, tote.paths);
    const second = await startController(env, tote.paths, { instance: 'b' });
    const one = await salvage(t);
    await waitForRecords(env, one.ns.name, 1, (r) => r.status?.phase === 'Completed');

    const holder = await leaseHolder();
    const [leader, standby] = holderIs(holder, first) ? [first, second] : [second, first];
    assert.ok(holderIs(holder, leader), `Lease holder ${holder} is one of the controllers`);
    assert.ok((await recordReconciles(leader)) > 0, 'the leader reconciled records');
    assert.equal(await recordReconciles(standby), 0, 'the standby reconciled nothing');

    await stopProcess(tote.paths, leader);
    await waitForObject<V1Lease>(
      env,
      `/apis/coordination.k8s.io/v1/namespaces/${toteNamespace}/leases`,
      leaseName,
      (l) => holderIs(l?.spec?.holderIdentity ?? '', standby),
      { timeoutMs: 60_000, what: `the standby ${standby.name} to hold the Lease` },
    );
    const two = await salvage(t);
    await waitForRecords(env, two.ns.name, 1, (r) => r.status?.phase === 'Completed');
    await waitForRunningPods(env, two.ns.name, 'app', 1);
    assert.ok((await recordReconciles(standby)) > 0, 'the new leader reconciled records');

    // Back to one controller, instance 0: start it (as standby if it was stopped), then stop b.
    await startController(env, tote.paths);
    const b = runningProcess(tote.paths, 'controller-b');
    if (b) await stopProcess(tote.paths, b);
  });
});
