// Backup push: a policy with a backup registry (TLS with a private CA, htpasswd credentials from a
// kubernetes.io/dockerconfigjson Secret) pushes the salvaged image there by digest after the pod recovers. A policy
// whose credentials Secret is missing says so in its Ready condition.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ensureCluster, kubectl, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import { ensureTote } from '../support/tote.ts';
import {
  deployment,
  lostImage,
  scopedPolicy,
  skopeoBackupDigest,
  backupPolicy,
  secret,
  waitForRecords,
  waitForRunningPods,
} from '../support/salvage.ts';
import { registries, registryDigest } from '../support/images.ts';
import { waitForObject } from '../support/wait.ts';
import type { SalvagePolicy } from '../../src/api/index.ts';

let env: ClusterEnv;
const policiesPath = '/apis/tote.dev/v1alpha1/salvagepolicies';

const readyOf = (p: SalvagePolicy | undefined) => p?.status?.conditions?.find((c) => c.type === 'Ready');

describe('backup push', () => {
  before(async () => {
    env = await ensureCluster();
    await ensureTote(env);
  });

  it('pushes the salvaged image to the backup registry by digest; the policy is Ready', async (t) => {
    const ns = await testNamespace(env, t);
    const target = `${env.backupRegistry}/rescued`;
    const policy = await backupPolicy(env, ns, target, {}, t);
    const image = await lostImage(env, { repository: `backup/${ns.name}`, layers: 2, layerSize: 128 * 1024 }, [
      'node-a',
    ]);
    await deployment(env, ns.name, 'app', image.reference(env.sourceRegistry), ['node-b']);

    const [record] = await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Completed');
    assert.ok(record);
    const backup = record.status?.backup;
    assert.equal(backup?.result, 'Pushed', JSON.stringify(backup));
    const reference = backup?.reference ?? '';
    assert.ok(reference.startsWith(`${target}/`), reference);
    // repository@digest, the tag apart: a reference any OCI tool takes as it is (skopeo refuses tag and digest both).
    const repository = reference.slice(env.backupRegistry.length + 1, reference.lastIndexOf('@'));
    assert.equal(reference, `${env.backupRegistry}/${repository}@${image.target.digest}`);
    assert.doesNotMatch(repository, /:/, 'no tag inside the reference');
    assert.equal(backup?.tag, image.tag);
    assert.equal(
      await skopeoBackupDigest(env, reference),
      image.target.digest,
      'skopeo reads the reference as written',
    );
    assert.equal(
      await registryDigest(registries(env).backup, repository, image.target.digest),
      image.target.digest,
      `the backup registry serves ${repository}@${image.target.digest}`,
    );
    const backedUp = record.status?.conditions?.find((c) => c.type === 'BackedUp');
    assert.equal(backedUp?.status, 'True');
    const phases = (record.status?.history ?? []).map((h) => h.phase);
    assert.ok(phases.indexOf('Restarting') < phases.indexOf('Pushing'), phases.join(' → '));
    await waitForRunningPods(env, ns.name, 'app', 1);

    const ready = readyOf(
      await waitForObject<SalvagePolicy & { metadata: object }>(env, policiesPath, policy, (p) => !!readyOf(p), {
        what: `policy ${policy} Ready`,
      }),
    );
    assert.equal(ready?.status, 'True', JSON.stringify(ready));
  });

  it('a policy whose credentials Secret is missing is not Ready (SecretNotFound)', async (t) => {
    const ns = await testNamespace(env, t);
    const policy = await scopedPolicy(
      env,
      ns,
      {
        backup: {
          target: `${env.backupRegistry}/rescued`,
          credentialsSecretRef: { namespace: 'tote-system', name: `${ns.name}-no-such-secret` },
        },
      },
      t,
    );
    const found = await waitForObject<SalvagePolicy & { metadata: object }>(
      env,
      policiesPath,
      policy,
      (p) => readyOf(p) !== undefined,
      { what: `policy ${policy} to report Ready` },
    );
    const ready = readyOf(found);
    assert.equal(ready?.status, 'False');
    assert.equal(ready?.reason, 'SecretNotFound');
    assert.match(ready?.message ?? '', /no-such-secret/);
  });

  it('a policy naming a Secret outside tote-system is not Ready (SecretOutOfScope), and tote never reads it', async (t) => {
    const ns = await testNamespace(env, t);
    // A Secret that exists, in the team's own namespace: tote may not read it, whoever wrote the policy.
    await secret(
      env,
      ns.name,
      'team-credentials',
      { '.dockerconfigjson': '{"auths":{}}' },
      'kubernetes.io/dockerconfigjson',
    );
    const policy = await scopedPolicy(
      env,
      ns,
      {
        backup: {
          target: `${env.backupRegistry}/rescued`,
          credentialsSecretRef: { namespace: ns.name, name: 'team-credentials' },
        },
      },
      t,
    );
    const found = await waitForObject<SalvagePolicy & { metadata: object }>(
      env,
      policiesPath,
      policy,
      (p) => readyOf(p) !== undefined,
      {
        what: `policy ${policy} to report Ready`,
      },
    );
    const ready = readyOf(found);
    assert.equal(ready?.status, 'False');
    assert.equal(ready?.reason, 'SecretOutOfScope');
    assert.match(ready?.message ?? '', /^spec\.backup\.credentialsSecretRef: /);
    // The controller's own identity cannot read it either: RBAC grants Secrets in tote-system only.
    const canI = await kubectl(env, [
      'auth',
      'can-i',
      'get',
      'secrets',
      '-n',
      ns.name,
      '--as',
      'system:serviceaccount:tote-system:tote-controller',
    ]);
    assert.equal(canI.stdout.trim(), 'no');
  });
});
