// Chaos: the controller dies (SIGKILL) in the middle of a salvage, and the leader is lost while a standby waits.
// The record's status is the only memory tote needs: a new controller (or the standby) reads it and carries on.
// "Completes once" means one Completed entry in the record's history, one deletion of the stuck pod, one pod running.
// Runs on the chaos cluster (test/support/chaos.ts), never the shared one.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { SalvageRecord } from '../../src/api/index.ts';
import { join } from 'node:path';
import { kubectl, repoRoot, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv, TestNamespace } from '../support/cluster.ts';
import {
  acquireChaosLock,
  ensureChaosTote,
  entries,
  killTote,
  startChaosController,
  trackPods,
  useChaosCluster,
} from '../support/chaos.ts';
import { registryDigest, registries } from '../support/images.ts';
import {
  deployment,
  lostImage,
  scopedPolicy,
  backupPolicy,
  waitForRecords,
  waitForRunningPods,
} from '../support/salvage.ts';
import { runningProcess, stopProcess, toteNamespace } from '../support/tote.ts';
import type { ToteDeployment } from '../support/tote.ts';
import { waitForObject } from '../support/wait.ts';

const mib = 1024 * 1024;

let env: ClusterEnv;
let tote: ToteDeployment;
let release: () => void = () => undefined;

type Ctx = { name: string; after: (fn: () => Promise<void>) => void; diagnostic: (m: string) => void };

describe('chaos: the controller killed', () => {
  before(async () => {
    release = await acquireChaosLock();
    env = await useChaosCluster();
    tote = await ensureChaosTote(env);
  });
  after(async () => {
    const standby = runningProcess(tote.paths, 'controller-standby');
    if (standby) await stopProcess(tote.paths, standby);
    await startChaosController(env, tote.paths);
    release();
  });

  const kubectlOrFail = async (args: string[]) => {
    const r = await kubectl(env, args);
    if (r.code !== 0) throw new Error(r.stderr);
  };
  /** The controller's ClusterRole without `delete` on pods (rule 0 in config/rbac/controller-role.yaml). */
  const forbidPodDeletion = () =>
    kubectlOrFail([
      'patch',
      'clusterrole',
      'tote-controller',
      '--type=json',
      '-p',
      JSON.stringify([{ op: 'replace', path: '/rules/0/verbs', value: ['get', 'list', 'watch'] }]),
    ]);
  const restoreRbac = () => kubectlOrFail(['apply', '-k', join(repoRoot, 'config/rbac'), '-n', toteNamespace]);

  /** Policy with backup to the cluster's TLS + htpasswd registry (credentials and CA from Secrets). */
  async function chaosBackupPolicy(ns: TestNamespace, t: Ctx, limits: Record<string, string> = {}) {
    return backupPolicy(env, ns, `${env.backupRegistry}/chaos`, { limits }, t);
  }

  async function salvageKilledAt(t: Ctx, phase: string, when: (r: SalvageRecord) => boolean) {
    const ns = await testNamespace(env, t);
    await chaosBackupPolicy(ns, t, { bandwidthPerTransfer: '4Mi' });
    const image = await lostImage(env, { repository: `chaos/${ns.name}`, tag: 'v1', layers: 1, layerSize: 40 * mib }, [
      'node-a',
    ]);
    const pods = await trackPods(env, ns.name);
    t.after(async () => pods.stop());
    await deployment(env, ns.name, 'app', image.reference(env.sourceRegistry), ['node-b']);
    const [seen] = await waitForRecords(env, ns.name, 1, when, { what: `a record in ${phase}`, timeoutMs: 120_000 });
    await killTote(tote.controller);
    t.diagnostic(`controller killed with the record in ${seen?.status?.phase} (${seen?.status?.message})`);
    tote.controller = await startChaosController(env, tote.paths);

    const [done] = await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Completed', {
      timeoutMs: 120_000,
    });
    assert.ok(done);
    for (const h of done.status?.history ?? []) t.diagnostic(`${h.phase} ${h.reason}`);
    assert.equal(entries(done, 'Completed'), 1, 'one Completed transition');
    assert.equal(entries(done, 'Restarting'), 1, 'one Restarting transition');
    const running = await waitForRunningPods(env, ns.name, 'app', 1);
    // Never deleted twice, and the record's history tells the truth: Restarting writes its status before the delete
    // runs, so it says "deleting X" (intent), never "deleted X"; a controller killed in between leaves X stuck, and the
    // next one deletes it (record-machine: restartStrandedPods) unless the kubelet's own retry started it first.
    assert.ok(pods.deleted.size <= 1, `at most one pod deletion, saw ${pods.deleted.size}`);
    assert.ok(pods.uids.size <= 2, 'the stuck pod and at most one replacement');
    const messages = (done.status?.history ?? []).map((h) => h.message ?? '');
    const pastTense = messages.filter((m) => /\bdeleted app-/.test(m));
    assert.deepEqual(pastTense, [], 'no history entry claims a deletion as done');
    const intended = messages.flatMap(
      (m) => /deleting (\S+(?:, \S+)*) so their controllers/.exec(m)?.[1]?.split(', ') ?? [],
    );
    const runningNames = new Set(running.map((p) => p.metadata?.name ?? ''));
    t.diagnostic(
      `record meant to delete [${intended.join(', ')}]; deleted [${[...pods.deletedNames].join(', ')}]; running [${[...runningNames].join(', ')}]`,
    );
    for (const name of intended)
      assert.ok(
        pods.deletedNames.has(name) || runningNames.has(name),
        `${name}: the record meant to delete it, yet it was neither deleted nor started`,
      );
    assert.equal(done.status?.backup?.result, 'Pushed', JSON.stringify(done.status?.backup));
    const pushed = await registryDigest(
      registries(env).backup,
      `chaos/${env.sourceRegistry.replace(':', '-')}/${image.repository}`,
      image.tag,
    );
    assert.equal(pushed, image.target.digest, 'the backup holds the same digest');
    return done;
  }

  it('in Transferring: the new controller resumes the transfer and the record completes once', async (t) => {
    await salvageKilledAt(
      t,
      'Transferring',
      (r) => r.status?.phase === 'Transferring' && (r.status.progress?.transferredBytes ?? 0) >= 4 * mib,
    );
  });

  it('in Pushing: the new controller pushes again and the record completes once', async (t) => {
    await salvageKilledAt(t, 'Pushing', (r) => r.status?.phase === 'Pushing');
  });

  it("killed between Restarting's write and its delete: the next controller deletes exactly the recorded pod, once", async (t) => {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, {}, t);
    const image = await lostImage(env, { repository: `chaos/${ns.name}`, tag: 'v1', layers: 1 }, ['node-a']);
    const pods = await trackPods(env, ns.name);
    t.after(async () => pods.stop());
    // The shipped role may delete pods; while it may not, the controller records its intent (status.restartedPods)
    // and its delete is refused: the state a controller killed between the two leaves behind.
    await forbidPodDeletion();
    t.after(restoreRbac);
    await deployment(env, ns.name, 'app', image.reference(env.sourceRegistry), ['node-b']);
    const [intent] = await waitForRecords(env, ns.name, 1, (r) => (r.status?.restartedPods ?? []).length > 0, {
      what: 'a record that recorded its pod deletion',
    });
    const recorded = intent?.status?.restartedPods ?? [];
    assert.equal(recorded.length, 1);
    assert.equal(pods.deleted.size, 0, 'the delete was refused');
    await killTote(tote.controller);
    await restoreRbac();
    tote.controller = await startChaosController(env, tote.paths);

    const [done] = await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Completed');
    assert.ok(done);
    const running = await waitForRunningPods(env, ns.name, 'app', 1);
    assert.equal(entries(done, 'Restarting'), 1, 'one Restarting transition');
    assert.deepEqual(done?.status?.restartedPods, recorded, 'the record keeps its one round');
    // The recorded pod is deleted once, by the next controller; only if the kubelet's own retry started it first is it
    // left running, and then it is that very pod that runs.
    if (pods.deleted.size === 0) assert.equal(running[0]?.metadata?.uid, recorded[0]?.uid);
    else assert.deepEqual([...pods.deleted], [recorded[0]?.uid]);
    assert.ok(pods.uids.size <= 2, 'the stuck pod and at most one replacement');
  });

  it('leader lost: the standby takes over within the lease duration and salvages', async (t) => {
    const standby = await startChaosController(env, tote.paths, 'standby');
    const leasePath = `/apis/coordination.k8s.io/v1/namespaces/${toteNamespace}/leases`;
    type Lease = { metadata?: { name?: string }; spec?: { holderIdentity?: string; leaseDurationSeconds?: number } };
    const held = (await waitForObject<Lease>(env, leasePath, 'tote-controller-leader', (l) =>
      /^controller-0_/.test(l?.spec?.holderIdentity ?? ''),
    )) as Lease;
    const durationMs = (held.spec?.leaseDurationSeconds ?? 0) * 1000;
    assert.equal(durationMs, 6000);

    const killedAt = Date.now();
    await killTote(tote.controller);
    await waitForObject<Lease>(
      env,
      leasePath,
      'tote-controller-leader',
      (l) => /^controller-standby_/.test(l?.spec?.holderIdentity ?? ''),
      { timeoutMs: 30_000 },
    );
    const takeoverMs = Date.now() - killedAt;
    t.diagnostic(`standby leads ${takeoverMs} ms after the leader was killed (lease ${durationMs} ms)`);
    // The standby may take over once the lease has run out after the last renewal, plus one retry period (1 s).
    assert.ok(takeoverMs <= durationMs + 2_000, `takeover took ${takeoverMs} ms`);

    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, {}, t);
    const image = await lostImage(env, { repository: `chaos/${ns.name}`, tag: 'v1', layers: 2, layerSize: mib }, [
      'node-c',
    ]);
    await deployment(env, ns.name, 'app', image.reference(env.sourceRegistry), ['node-b']);
    const [done] = await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Completed');
    assert.equal(done?.status?.sourceNode, 'node-c');
    await waitForRunningPods(env, ns.name, 'app', 1);
    await stopProcess(tote.paths, standby);
  });
});
