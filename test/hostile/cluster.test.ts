// Hostile input at the controller, on the shared test cluster (non-destructive: own namespaces and policies only):
// malformed and crafted image references in stuck pods, Secrets that are not registry credentials, and a hand-made
// SalvageRecord for a node that does not exist. Each must end in a clear, typed outcome with the controller still
// working; "no record" is asserted only after the controller provably handled a later event (an in-scope twin, stuck
// after the hostile pod, is salvaged), never after a sleep.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Pod } from '@kubernetes/client-node';
import type { SalvagePolicy } from '../../src/api/index.ts';
import { ensureCluster, kubectl, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import {
  apply,
  deployment,
  listRecords,
  lostImage,
  scopedPolicy,
  policySecret,
  waitForRecords,
  waitForRunningPods,
} from '../support/salvage.ts';
import { ensureTote, isRunning } from '../support/tote.ts';
import type { ToteDeployment } from '../support/tote.ts';
import { waitForObject, waitForPod, waitingReason } from '../support/wait.ts';

let env: ClusterEnv;
let tote: ToteDeployment;

const dnsSubdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const labelName = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

/** Whether a label key (optional DNS-subdomain prefix, `/`, name ≤ 63) and value (≤ 63, may be empty) are valid. */
function validLabel(key: string, value: string): boolean {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length > 253 || !dnsSubdomain.test(prefix))) return false;
  if (name.length > 63 || !labelName.test(name)) return false;
  return value === '' || (value.length <= 63 && labelName.test(value));
}

const stuckReasons = ['ErrImagePull', 'ImagePullBackOff'];

describe('hostile input at the controller', () => {
  before(async () => {
    env = await ensureCluster();
    tote = await ensureTote(env);
  });

  it('malformed and crafted image references: no record for what does not parse, valid names and labels for what does, the controller keeps salvaging', async (t) => {
    const reg = env.sourceRegistry;
    // Refs no OCI/Docker parser accepts: tote must skip them (not its to fix), create nothing and not crash.
    const malformed = [
      'UPPER/Case:tag',
      'a//b',
      'x@sha256:zz',
      '../../etc',
      `${reg}/../../etc/passwd:v1`,
      `${reg}/app:../../x`,
      `${reg}/app\nevil:v1`,
      `${reg}/app:v1"}`,
      `${reg}/app:v1,tote.dev/policy=evil`,
      `${reg}/${'a'.repeat(300)}:v1`,
      `${reg}/${'x'.repeat(4096)}`,
    ];
    // Valid but extreme refs: each gets a record, whose name and labels must stay valid whatever the ref holds.
    const extreme = [
      `${reg}/${'a'.repeat(255 - reg.length - 1)}:v1`,
      `${reg}/hostile/app:${'T'.repeat(128)}`,
      `${reg}/${Array.from({ length: 40 }, () => 'ab').join('/')}:v1`,
      `${reg}/hostile/a.b_c__d-e:v1.0_rc-1`,
    ];
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, {}, t);
    const controllerPid = tote.controller.pid;

    const images = [...malformed, ...extreme];
    await apply(env, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'hostile', namespace: ns.name },
      spec: {
        nodeName: 'node-c',
        containers: images.map((image, i) => ({ name: `c${i}`, image, imagePullPolicy: 'IfNotPresent' })),
      },
    });
    const stuck = await waitForPod(
      env,
      ns.name,
      'hostile',
      (p: V1Pod) =>
        (p.status?.containerStatuses ?? []).length === images.length &&
        (p.status?.containerStatuses ?? []).every((s) => stuckReasons.includes(s.state?.waiting?.reason ?? '')),
      { what: 'every container of the hostile pod stuck pulling' },
    );
    t.diagnostic(
      `kubelet reasons: ${[...new Set(stuck.status?.containerStatuses?.map((s) => waitingReason(stuck, s.name)))].join(', ')}`,
    );

    // The twin: stuck after the hostile pod, in the same namespace and policy; its salvage proves the controller
    // handled what came before it and still works.
    const image = await lostImage(env, { repository: `hostile/${ns.name}`, layerSize: 64 * 1024 }, ['node-a']);
    await deployment(env, ns.name, 'twin', image.reference(reg), ['node-b']);
    const twinRef = image.reference(reg);
    await waitForRecords(env, ns.name, 1, (r) => r.spec.imageRef === twinRef && r.status?.phase === 'Completed');
    await waitForRunningPods(env, ns.name, 'twin', 1);
    await waitForRecords(env, ns.name, extreme.length, (r) => extreme.includes(r.spec.imageRef), {
      what: 'a record for each valid extreme ref',
    });

    const records = await listRecords(env, ns.name);
    for (const r of records) t.diagnostic(`${r.metadata?.name}: ${r.status?.phase} ${r.spec.imageRef.slice(0, 60)}…`);
    assert.deepEqual(
      records.map((r) => r.spec.imageRef).sort(),
      [...extreme, twinRef].sort(),
      'one record per valid ref, none for a malformed one',
    );
    for (const r of records) {
      const name = r.metadata?.name ?? '';
      assert.ok(name.length <= 253 && dnsSubdomain.test(name), `record name ${JSON.stringify(name)}`);
      for (const [k, v] of Object.entries(r.metadata?.labels ?? {}))
        assert.ok(validLabel(k, v), `label ${JSON.stringify(k)}=${JSON.stringify(v)} on ${name}`);
      assert.equal(r.spec.targetNode, r.spec.imageRef === twinRef ? 'node-b' : 'node-c');
    }
    assert.equal(tote.controller.pid, controllerPid);
    assert.ok(isRunning(controllerPid), 'the controller never crashed');
    assert.equal((await fetch(`${tote.controller.healthUrl}/readyz`)).status, 200);
  });

  /** Waits until the policy's Ready condition is False with `reason`; returns it. */
  async function policyNotReady(name: string, reason: string) {
    const policy = (await waitForObject<SalvagePolicy & { metadata: object }>(
      env,
      '/apis/tote.dev/v1alpha1/salvagepolicies',
      name,
      (p) =>
        p?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'False' && c.reason === reason) ?? false,
      { what: `policy ${name} Ready=False ${reason}` },
    )) as SalvagePolicy;
    return policy.status?.conditions?.find((c) => c.type === 'Ready');
  }

  const secretValue = 'hunter2-D0-N0T-ECH0';
  const badSecrets: { what: string; type: string; data: Record<string, string> }[] = [
    { what: 'an Opaque Secret', type: 'Opaque', data: { '.dockerconfigjson': secretValue, password: secretValue } },
    {
      what: 'dockerconfigjson whose auths is not an object',
      type: 'kubernetes.io/dockerconfigjson',
      data: { '.dockerconfigjson': JSON.stringify({ auths: secretValue }) },
    },
    {
      what: 'dockerconfigjson whose auth is not base64 user:password',
      type: 'kubernetes.io/dockerconfigjson',
      data: { '.dockerconfigjson': JSON.stringify({ auths: { 'registry.example.com': { auth: `${secretValue}!` } } }) },
    },
  ];
  for (const bad of badSecrets) {
    it(`a policy naming ${bad.what} as registry credentials: Ready=False SecretInvalid, the value never shown`, async (t) => {
      const ns = await testNamespace(env, t);
      const credentialsSecretRef = await policySecret(env, ns, 'creds', bad.data, bad.type, t);
      const name = await scopedPolicy(
        env,
        ns,
        {
          backup: {
            target: `${env.backupRegistry}/hostile`,
            credentialsSecretRef,
          },
        },
        t,
      );
      const ready = await policyNotReady(name, 'SecretInvalid');
      t.diagnostic(`${ready?.reason}: ${ready?.message}`);
      assert.match(ready?.message ?? '', /credentialsSecretRef/);
      assert.match(
        ready?.message ?? '',
        new RegExp(`${credentialsSecretRef.namespace}/${credentialsSecretRef.name}`),
        'names the Secret',
      );
      assert.ok(!(ready?.message ?? '').includes(secretValue.slice(0, 7)), 'never echoes the value');
      const events = await kubectl(env, ['get', 'events', '-A', '-o', 'json']);
      assert.ok(!events.stdout.includes(secretValue), 'no Event carries the value');
    });
  }

  it('a hand-made SalvageRecord for a node that does not exist: NotActionable, saying so', async (t) => {
    const ns = await testNamespace(env, t);
    const policy = await scopedPolicy(env, ns, {}, t);
    const digest = `sha256:${'ab'.repeat(32)}`;
    for (const [name, spec] of [
      ['by-digest', { imageRef: `${env.sourceRegistry}/ghost/app@${digest}`, digest }],
      ['by-tag', { imageRef: `${env.sourceRegistry}/ghost/app:v1` }],
    ] as const) {
      await apply(env, {
        apiVersion: 'tote.dev/v1alpha1',
        kind: 'SalvageRecord',
        metadata: { name, namespace: ns.name },
        spec: { ...spec, targetNode: 'no-such-node', policyRef: { name: policy } },
      });
    }
    const done = await waitForRecords(env, ns.name, 2, (r) => r.status?.phase === 'NotActionable');
    for (const r of done) {
      const ready = r.status?.conditions?.find((c) => c.type === 'Ready');
      t.diagnostic(`${r.metadata?.name}: ${ready?.reason}: ${r.status?.message}`);
      assert.equal(ready?.reason, 'TargetNodeGone', `${r.metadata?.name}`);
      assert.match(r.status?.message ?? '', /node no-such-node does not exist/);
    }
  });
});
