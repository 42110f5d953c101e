// `tote doctor` against the local cluster with tote running: a healthy install passes, a policy with a missing Secret
// fails it (non-zero exit, the row names the Secret), and a workload tote cannot help is called out.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { ensureCluster, kubectl, repoRoot, testNamespace } from '../../support/cluster.ts';
import type { ClusterEnv } from '../../support/cluster.ts';
import { ensureTote } from '../../support/tote.ts';
import type { TotePaths } from '../../support/tote.ts';
import { scopedPolicy } from '../../support/salvage.ts';
import { waitForObject } from '../../support/wait.ts';
import type { CheckRow } from '../../../src/cmd/doctor.ts';

let env: ClusterEnv;
let paths: TotePaths;

function doctor(): Promise<{ code: number; rows: CheckRow[]; stderr: string }> {
  const args = [
    join(repoRoot, 'src/cmd/tote.ts'),
    'doctor',
    '--output=json',
    `--kubeconfig=${env.kubeconfig}`,
    `--tls-ca-file=${join(paths.certs, 'ca.crt')}`,
    `--tls-cert-file=${join(paths.certs, 'controller.crt')}`,
    `--tls-key-file=${join(paths.certs, 'controller.key')}`,
  ];
  return new Promise((resolve) => {
    execFile(join(repoRoot, 'node_modules/.bin/node'), args, { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, rows: stdout ? (JSON.parse(stdout) as CheckRow[]) : [], stderr });
    });
  });
}

const row = (rows: CheckRow[], check: string) => rows.find((r) => r.check === check);

describe('tote doctor', () => {
  before(async () => {
    env = await ensureCluster();
    paths = (await ensureTote(env)).paths;
  });

  it('passes a healthy install: API, CRDs, leader, every agent answering with its containerd version', async () => {
    const { rows, stderr } = await doctor();
    assert.equal(row(rows, 'API server')?.verdict, 'ok', stderr);
    assert.equal(row(rows, 'CRD salvagepolicies.tote.dev')?.verdict, 'ok');
    assert.equal(row(rows, 'CRD salvagerecords.tote.dev')?.verdict, 'ok');
    assert.equal(row(rows, 'controller')?.verdict, 'ok', row(rows, 'controller')?.detail);
    for (const node of env.nodes) {
      const agent = row(rows, `agent ${node}`);
      assert.notEqual(agent?.verdict, 'fail', agent?.detail);
      assert.match(agent?.detail ?? '', /containerd 1\.6/);
      // The local cluster's Debian containerd 1.6.20 predates 1.6.26: pins set outside CRI are ignored there.
      assert.equal(env.nodeContainerd.get(node), '1.6');
      assert.equal(agent?.verdict, 'warn', agent?.detail);
      assert.match(agent?.detail ?? '', /ignores pins set outside CRI/);
    }
    assert.equal(rows.filter((r) => r.verdict === 'fail').length, 0, JSON.stringify(rows));
  });

  it('fails on a policy whose credentials Secret is missing, and flags imagePullPolicy: Always in scope', async (t) => {
    const ns = await testNamespace(env, t);
    const policy = await scopedPolicy(
      env,
      ns,
      {
        backup: {
          target: 'backup.example.com/tote',
          credentialsSecretRef: { namespace: 'tote-system', name: `${ns.name}-nope` },
        },
      },
      t,
    );
    await waitForObject<{ metadata: object; status?: { conditions?: { type: string; status: string }[] } }>(
      env,
      '/apis/tote.dev/v1alpha1/salvagepolicies',
      policy,
      (p) => p?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'False') ?? false,
      { what: `policy ${policy} Ready=False` },
    );
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'always', namespace: ns.name },
      spec: { containers: [{ name: 'c', image: `${env.sourceRegistry}/doctor/always:1`, imagePullPolicy: 'Always' }] },
    };
    assert.equal((await kubectl(env, ['apply', '-f', '-'], { input: JSON.stringify(pod) })).code, 0);

    const { code, rows } = await doctor();
    assert.equal(code, 1);
    const failed = row(rows, `policy ${policy}`);
    assert.equal(failed?.verdict, 'fail');
    assert.match(failed?.detail ?? '', /SecretNotFound.*nope/);
    assert.match(row(rows, 'workloads')?.detail ?? '', new RegExp(`${ns.name}/always`));
  });
});
