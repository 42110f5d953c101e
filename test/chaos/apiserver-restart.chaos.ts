// Chaos: kube-apiserver SIGKILLed while a salvage transfers, then started again with the same command line. The
// controller must live through the outage (same process), its watches recover, the salvage in flight completes and a
// pod stuck only after the restart is noticed. Takes minutes on a 2-core machine, so it runs in `make test-chaos` only.
// Runs on the chaos cluster (test/support/chaos.ts), never the shared one.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import {
  acquireChaosLock,
  chaosControllerArgs,
  ensureChaosTote,
  entries,
  killComponent,
  scrapeCounter,
  startChaosController,
  useChaosCluster,
} from '../support/chaos.ts';
import { deployment, lostImage, scopedPolicy, waitForRecords, waitForRunningPods } from '../support/salvage.ts';
import { isRunning, startController, stopProcess } from '../support/tote.ts';
import type { ToteDeployment } from '../support/tote.ts';

const mib = 1024 * 1024;

let env: ClusterEnv;
let tote: ToteDeployment;
let release: () => void = () => undefined;

/**
 * kube-apiserver serves again: /readyz, and a list of SalvageRecords (custom resources' storage comes up after /readyz
 * turns 200, answering 429 "storage is (re)initializing" in between).
 */
async function apiserverReady(): Promise<boolean> {
  return (await apiserverGet('/readyz')) && (await apiserverGet('/apis/tote.dev/v1alpha1/salvagerecords?limit=1'));
}

/** A GET on kube-apiserver with the admin certificate; true on 200. */
function apiserverGet(path: string): Promise<boolean> {
  const port = /^apiserver=(\d+)$/m.exec(readFileSync(`${env.dir}/ports`, 'utf8'))?.[1];
  return new Promise((resolve) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: Number(port),
        path,
        ca: readFileSync(`${env.dir}/pki/ca.crt`),
        cert: readFileSync(`${env.dir}/pki/admin.crt`),
        key: readFileSync(`${env.dir}/pki/admin.key`),
        timeout: 2_000,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

describe('chaos: kube-apiserver restarted', () => {
  before(async () => {
    release = await acquireChaosLock();
    env = await useChaosCluster();
    tote = await ensureChaosTote(env);
  });
  after(() => release());

  it('kube-apiserver killed mid-salvage: watches recover, the salvage in flight and one started after complete', async (t) => {
    // A leader that cannot renew its Lease for the renew deadline stops (as controller-runtime's do) and its Deployment
    // starts it again: with the chaos flags (4 s) the outage below (7–10 s) would end the process, and a fresh process
    // lists everything anew, proving nothing about watches. So this test runs one controller whose lease outlasts the
    // outage (the shipped default deadline, 10 s, would too on a faster machine), and requires that very process to
    // carry on: same pid, its informers recovered.
    await stopProcess(tote.paths, tote.controller);
    const patient = await startController(env, tote.paths, {
      instance: 'apiserver-chaos',
      args: [
        ...chaosControllerArgs.filter((a) => !a.startsWith('--leader-elect-')),
        '--leader-elect-lease-duration=90s',
        '--leader-elect-renew-deadline=60s',
        '--leader-elect-retry-period=1s',
      ],
    });
    t.after(async () => {
      await stopProcess(tote.paths, patient);
      tote.controller = await startChaosController(env, tote.paths);
    });
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, { limits: { bandwidthPerTransfer: '4Mi' } }, t);
    const first = await lostImage(env, { repository: `chaos/${ns.name}/first`, layers: 1, layerSize: 40 * mib }, [
      'node-a',
    ]);
    const second = await lostImage(env, { repository: `chaos/${ns.name}/second`, layers: 1, layerSize: mib }, [
      'node-c',
    ]);
    await deployment(env, ns.name, 'first', first.reference(env.sourceRegistry), ['node-b']);
    await waitForRecords(
      env,
      ns.name,
      1,
      (r) => r.status?.phase === 'Transferring' && (r.status.progress?.transferredBytes ?? 0) >= 2 * mib,
    );
    const apiserver = await killComponent(env, 'kube-apiserver');
    const downAt = Date.now();
    await apiserver.restart(apiserverReady, 120_000);
    t.diagnostic(`kube-apiserver down for ${Date.now() - downAt} ms`);
    // Created after the restart: only a controller whose watches recovered notices this pod.
    await deployment(env, ns.name, 'second', second.reference(env.sourceRegistry), ['node-b']);

    const done = await waitForRecords(env, ns.name, 2, (r) => r.status?.phase === 'Completed', {
      timeoutMs: 180_000,
    });
    for (const r of done) assert.equal(entries(r, 'Completed'), 1, `${r.metadata?.name} completed once`);
    await waitForRunningPods(env, ns.name, 'first', 1);
    await waitForRunningPods(env, ns.name, 'second', 1);
    assert.ok(isRunning(patient.pid), 'the controller lived through the outage (never restarted)');
    const ready = await fetch(`${patient.healthUrl}/readyz`);
    assert.equal(ready.status, 200, 'the controller is ready again');
    const restarts = await scrapeCounter(patient.metricsUrl, 'tote_informer_watch_restarts_total');
    t.diagnostic(`watch restarts counted by the controller: ${restarts}`);
    assert.ok(restarts >= 1, 'the watches really broke and were restarted in this process');
  });
});
