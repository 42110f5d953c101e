// The whole story on real kubelets (test/support/real-cluster.ts): an image lost from its registry survives on one
// node; tote moves it node to node and the pods' containers really start. Every check uses a tool independent of
// tote: the API server through kubectl (pods, logs), the node's own ctr (what containerd holds), the registry's API.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Pod } from '@kubernetes/client-node';
import { kubectl, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import { deleteBlobsFromNode, nodeHasImage, registries, registryDigest } from '../support/images.ts';
import {
  nodeImageDigests,
  removeSnapshots,
  runningImage,
  useRealCluster,
  waitForLogLine,
} from '../support/real-cluster.ts';
import { apply, deployment, lostImage, scopedPolicy, waitForRecords, waitForRunningPods } from '../support/salvage.ts';
import { trackPods } from '../support/chaos.ts';
import { ensureTote } from '../support/tote.ts';
import { podsPath, waitForAny, waitForPod, waitForPodReady, waitingReason, watchUntil } from '../support/wait.ts';

let env: ClusterEnv;

const deployedPods = (pods: V1Pod[]) => pods.map((p) => `${p.metadata?.name}@${p.spec?.nodeName}`).join(', ');

describe('e2e on real kubelets', () => {
  before(async () => {
    env = await useRealCluster();
    await ensureTote(env);
  });

  it('main story: an image held only by node-a runs again on node-b and node-c', async (t) => {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, {}, t);
    const image = await lostImage(env, runningImage(`e2e/main-${ns.name}`), ['node-a']);
    const ref = image.reference(env.sourceRegistry);
    assert.equal(
      await registryDigest(registries(env).source, image.repository, image.tag),
      undefined,
      'the registry lost the image',
    );

    await deployment(env, ns.name, 'app', ref, ['node-b', 'node-c'], 2);
    const records = await waitForRecords(env, ns.name, 2, (r) => r.status?.phase === 'Completed', {
      timeoutMs: 180_000,
    });
    assert.deepEqual(records.map((r) => r.spec.targetNode).sort(), ['node-b', 'node-c']);
    const pods = await waitForRunningPods(env, ns.name, 'app', 2, { timeoutMs: 120_000 });
    assert.deepEqual(pods.map((p) => p.spec?.nodeName).sort(), ['node-b', 'node-c'], deployedPods(pods));

    for (const pod of pods) {
      const name = pod.metadata?.name ?? '';
      assert.match(pod.status?.podIP ?? '', /^10\.\d+\.\d+\.\d+$/, `${name} has a real pod IP`);
      assert.match(await waitForLogLine(env, ns.name, name), new RegExp(`tote e2e: running in ${name}`));
      // kubectl exec, through the API server and the node's kubelet, into the salvaged image's own busybox.
      const exec = await kubectl(env, ['exec', '-n', ns.name, name, '--', '/bin/busybox', 'hostname']);
      assert.equal(exec.stdout.trim(), name, exec.stderr);
      const node = pod.spec?.nodeName ?? '';
      assert.ok(
        (await nodeImageDigests(env, node)).has(image.target.digest),
        `ctr on ${node} lists ${image.target.digest}`,
      );
    }
    assert.equal(
      await registryDigest(registries(env).source, image.repository, image.tag),
      undefined,
      'the image came from node-a, not from the registry',
    );
  });

  it('a bare pod is picked up by the kubelet’s own back-off; nothing deletes it', async (t) => {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, {}, t);
    const image = await lostImage(env, runningImage(`e2e/bare-${ns.name}`), ['node-a']);
    const tracker = await trackPods(env, ns.name);
    t.after(() => tracker.stop());
    await apply(env, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'bare', namespace: ns.name },
      spec: {
        nodeSelector: { 'kubernetes.io/hostname': 'node-b' },
        containers: [{ name: 'app', image: image.reference(env.sourceRegistry), imagePullPolicy: 'IfNotPresent' }],
      },
    });
    // The kubelet's own failure, with containerd's own words.
    const stuck = await waitForPod(
      env,
      ns.name,
      'bare',
      (p) => ['ErrImagePull', 'ImagePullBackOff'].includes(waitingReason(p) ?? ''),
      { timeoutMs: 60_000 },
    );
    const waiting = stuck.status?.containerStatuses?.[0]?.state?.waiting;
    assert.match(waiting?.message ?? '', /not found/, JSON.stringify(waiting));
    const uid = stuck.metadata?.uid;

    await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Completed', { timeoutMs: 180_000 });
    // The kubelet retries when its back-off (10 s doubling, up to 5 min) runs out and finds the image present.
    const running = await waitForPodReady(env, ns.name, 'bare', { timeoutMs: 330_000 });
    assert.equal(running.metadata?.uid, uid, 'the same pod, never recreated');
    assert.equal(tracker.deleted.size, 0, 'nothing deleted the bare pod');
    await waitForLogLine(env, ns.name, 'bare');
  });

  it('CreateContainerError from a real kubelet: a layer gone from the content store is brought back', async (t) => {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, {}, t);
    const image = await lostImage(env, runningImage(`e2e/corrupt-${ns.name}`), ['node-a', 'node-c']);
    const ref = image.reference(env.sourceRegistry);
    const layers = image.platforms[0]?.layers ?? [];
    const top = layers.at(-1);
    assert.ok(top);
    // The image record stays on node-c; its top layer is neither unpacked nor in the content store any more.
    await removeSnapshots(
      env,
      'node-c',
      layers.map((l) => l.diffID),
      1,
    );
    await deleteBlobsFromNode(env.nodeSockets.get('node-c') ?? '', [top.digest]);
    assert.ok(await nodeHasImage(env.nodeSockets.get('node-c') ?? '', ref), 'the image record stays on node-c');

    await deployment(env, ns.name, 'app', ref, ['node-c']);
    const stuck = await waitForAny<V1Pod>(env, podsPath(ns.name), (p) => waitingReason(p) === 'CreateContainerError', {
      labelSelector: 'app=app',
      timeoutMs: 60_000,
      what: 'a pod in CreateContainerError',
    });
    const waiting = stuck.status?.containerStatuses?.[0]?.state?.waiting;
    assert.match(waiting?.message ?? '', new RegExp(top.digest), JSON.stringify(waiting));

    const [record] = await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Completed', {
      timeoutMs: 180_000,
    });
    assert.equal(record?.spec.reason, 'CreateContainerError');
    const [pod] = await waitForRunningPods(env, ns.name, 'app', 1, { timeoutMs: 120_000 });
    await waitForLogLine(env, ns.name, pod?.metadata?.name ?? '');
  });

  it('mixed versions: an image held only by a containerd 2.x node runs on the 1.6 node', async (t) => {
    const [from, to] = ['node-b', 'node-a'];
    assert.equal(env.nodeContainerd.get(from), '2', `${from} runs containerd 2.x (${env.vars.TOTE_CONTAINERD})`);
    assert.equal(env.nodeContainerd.get(to), '1.6', `${to} runs containerd 1.6 (${env.vars.TOTE_CONTAINERD})`);
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, {}, t);
    const image = await lostImage(env, runningImage(`e2e/mixed-${ns.name}`), [from]);
    await deployment(env, ns.name, 'app', image.reference(env.sourceRegistry), [to], 1);
    await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Completed', { timeoutMs: 180_000 });
    const [pod] = await waitForRunningPods(env, ns.name, 'app', 1, { timeoutMs: 120_000 });
    assert.equal(pod?.spec?.nodeName, to);
    await waitForLogLine(env, ns.name, pod.metadata?.name ?? '');
    assert.ok((await nodeImageDigests(env, to)).has(image.target.digest), `ctr on ${to} lists the image`);
  });

  // Written as a todo on 2026-12-07 when it found tote deleting every replacement pod of an Always workload about once a
  // second; main's "no deletion storm" change (b540fb4) fixed that, and the test now holds it.
  it('imagePullPolicy: Always stays stuck as documented, and tote deletes no pod more than once', async (t) => {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, {}, t);
    const image = await lostImage(env, runningImage(`e2e/always-${ns.name}`), ['node-a']);
    const tracker = await trackPods(env, ns.name);
    t.after(() => tracker.stop());
    await deployment(env, ns.name, 'always', image.reference(env.sourceRegistry), ['node-b'], 1, 'Always');
    const [record] = await waitForRecords(
      env,
      ns.name,
      1,
      (r) => ['Completed', 'Failed', 'NotActionable', 'Skipped'].includes(r.status?.phase ?? ''),
      { timeoutMs: 180_000 },
    );
    // The image is on node-b now, yet the kubelet pulls again (Always) and fails: a pod there is stuck again.
    assert.ok((await nodeImageDigests(env, 'node-b')).has(image.target.digest), 'the image reached node-b');
    assert.ok(record);
    const stuck = await watchUntil<V1Pod, V1Pod>(
      env,
      podsPath(ns.name),
      { labelSelector: 'app=always' },
      (pods) =>
        [...pods.values()].find(
          (p) =>
            !p.metadata?.deletionTimestamp && ['ErrImagePull', 'ImagePullBackOff'].includes(waitingReason(p) ?? ''),
        ),
      { timeoutMs: 120_000, what: 'a pod of the Always Deployment stuck after the salvage' },
    );
    const name = stuck.metadata?.name ?? '';
    // Let the kubelet try that pod again (its back-off is 10 s, then 20 s): tote had every chance to delete it. A
    // second deletion ends the wait at once.
    const before = await pullAttempts(ns.name, name);
    await waitFor(
      async () => tracker.deletedNames.size > 1 || (await pullAttempts(ns.name, name)) >= before + 1,
      90_000,
      `another pull of ${name}`,
    );
    const names = [...tracker.deletedNames];
    assert.ok(names.length <= 1, `tote deleted ${names.length} pods: ${names.join(', ')}`);
    assert.ok(!names.includes(name), `${name}, stuck after the salvage, was deleted`);
  });
});

/** How many times the kubelet started pulling for a pod (its `Pulling` Events, repeats counted). */
async function pullAttempts(namespace: string, pod: string): Promise<number> {
  const r = await kubectl(env, [
    'get',
    'events',
    '-n',
    namespace,
    '--field-selector',
    `involvedObject.name=${pod}`,
    '-o',
    'json',
  ]);
  if (r.code !== 0) throw new Error(r.stderr);
  const items = (JSON.parse(r.stdout) as { items: { reason?: string; count?: number; series?: { count?: number } }[] })
    .items;
  return items.filter((e) => e.reason === 'Pulling').reduce((n, e) => n + (e.series?.count ?? e.count ?? 1), 0);
}

/** Polls `check` (every 500 ms) until it holds or the deadline passes. */
async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 500)); // polling interval of a deadline-bound wait
  }
}
