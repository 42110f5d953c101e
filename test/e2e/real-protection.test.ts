// Protection (SalvagePolicy spec.protection) on real kubelets (test/support/real-cluster.ts): a pinned protective copy
// survives the kubelet's own image garbage collection while an unpinned unused image is collected; and the node holding
// the last copy of a Deployment's image cordoned, then `kubectl drain`ed, leaves the Deployment running on the other
// nodes without its pod ever waiting for the image. Every check uses a tool independent of tote: kubectl, and the
// node's own ctr.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Pod } from '@kubernetes/client-node';
import { kubectl, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import type { ImageSpec } from '../support/images.ts';
import { nodeCtr, nodeImageDigests, restartKubeletWith, useRealCluster } from '../support/real-cluster.ts';
import {
  apply,
  deployment,
  imageOnNodes,
  lostImage,
  scopedPolicy,
  waitForRecords,
  waitForRunningPods,
} from '../support/salvage.ts';
import { ensureTote } from '../support/tote.ts';
import { pollUntil } from '../support/wait.ts';

let env: ClusterEnv;

const sleeper = (repository: string): ImageSpec => ({
  repository,
  layers: 2,
  layerSize: 128 * 1024,
  command: ['sh', '-c', 'exec sleep 3600'],
});

/** The lines of the node's `ctr images ls` (name, type, digest, size, platforms, labels) for one digest. */
async function ctrImageLines(node: string, digest: string): Promise<string[]> {
  return (await nodeCtr(env, node, ['images', 'ls'])).split('\n').filter((line) => line.includes(digest));
}

describe('protection on real kubelets', () => {
  before(async () => {
    env = await useRealCluster();
    await ensureTote(env);
  });

  it('a pinned protective copy survives the kubelet’s image GC; an unused unpinned image is collected', async (t) => {
    assert.equal(env.nodeContainerd.get('node-c'), '2', 'node-c runs containerd 2.x, which honours pins');
    const ns = await testNamespace(env, t);
    const unused = await imageOnNodes(env, sleeper(`gc/unused-${ns.name}`), ['node-c']);
    // Every image the kubelet does not use and that is not pinned goes at the first image GC more than 30 s after it
    // started (its GC runs at start, then every 5 minutes). The maximum age must exceed the minimum (default 2m).
    t.after(await restartKubeletWith(env, 'node-c', { imageMinimumGCAge: '10s', imageMaximumGCAge: '30s' }));

    await scopedPolicy(env, ns, { protection: { minCopies: 3 } }, t);
    const image = await lostImage(env, sleeper(`gc/protected-${ns.name}`), ['node-b']);
    await deployment(env, ns.name, 'app', image.reference(env.sourceRegistry), ['node-b']);
    await waitForRunningPods(env, ns.name, 'app', 1);

    const records = await waitForRecords(
      env,
      ns.name,
      2,
      (r) => r.spec.purpose === 'Protect' && r.status?.phase === 'Completed',
      { timeoutMs: 180_000 },
    );
    assert.deepEqual(records.map((r) => r.spec.targetNode).sort(), ['node-a', 'node-c']);
    const digest = image.target.digest;
    assert.ok((await nodeImageDigests(env, 'node-c')).has(digest), 'ctr on node-c lists the protective copy');
    await pollUntil(
      async () => {
        const lines = await ctrImageLines('node-c', digest);
        return lines.length > 0 && lines.every((l) => l.includes('io.cri-containerd.pinned=pinned')) ? true : undefined;
      },
      { what: `${digest} pinned on node-c`, describe: async () => (await ctrImageLines('node-c', digest)).join('\n') },
    );

    await pollUntil(
      async () => (!(await nodeImageDigests(env, 'node-c')).has(unused.target.digest) ? true : undefined),
      {
        timeoutMs: 12 * 60_000,
        intervalMs: 5_000,
        what: 'the kubelet of node-c collecting the unused, unpinned image',
        describe: async () => (await nodeCtr(env, 'node-c', ['images', 'ls'])).slice(0, 4000),
      },
    );
    assert.ok(
      (await nodeImageDigests(env, 'node-c')).has(digest),
      'the pinned copy survived the same garbage collection',
    );
  });

  it('cordon, then kubectl drain of the node with the last copy: the Deployment runs on the other nodes, never stuck', async (t) => {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, { protection: { minCopies: 2 } }, t);
    const image = await lostImage(env, sleeper(`drain/app-${ns.name}`), ['node-a']);
    const ref = image.reference(env.sourceRegistry);
    const digest = image.target.digest;
    // The pod starts on node-a (the other nodes are tainted until it runs), yet may move anywhere afterwards.
    const taint = 'tote.dev/story=drain:NoSchedule';
    const untaint = async () => {
      for (const node of ['node-b', 'node-c']) await kubectl(env, ['taint', 'node', node, `${taint}-`]);
    };
    t.after(untaint);
    for (const node of ['node-b', 'node-c']) {
      const tainted = await kubectl(env, ['taint', 'node', node, taint, '--overwrite']);
      assert.equal(tainted.code, 0, tainted.stderr);
    }
    await apply(env, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'app', namespace: ns.name },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'app' } },
        template: {
          metadata: { labels: { app: 'app' } },
          spec: {
            terminationGracePeriodSeconds: 1,
            containers: [{ name: 'app', image: ref, imagePullPolicy: 'IfNotPresent' }],
          },
        },
      },
    });
    const [before] = await waitForRunningPods(env, ns.name, 'app', 1);
    assert.equal(before?.spec?.nodeName, 'node-a');
    await untaint();

    // Two copies wanted: node-a's is replicated at once (Endangered). Cordoning node-a stops its copy counting: the
    // next copy is an Evacuation, from the cordoned node or the new holder, before anything is evicted.
    t.after(async () => {
      await kubectl(env, ['uncordon', 'node-a']);
    });
    const cordoned = await kubectl(env, ['cordon', 'node-a']);
    assert.equal(cordoned.code, 0, cordoned.stderr);
    // Two copies on the staying nodes, at least one of them made because node-a is leaving.
    const copies = await waitForRecords(
      env,
      ns.name,
      2,
      (r) => r.spec.purpose === 'Protect' && r.status?.phase === 'Completed',
      { timeoutMs: 180_000 },
    );
    const evacuation = copies.find((r) => r.spec.reason === 'Evacuation');
    assert.ok(evacuation, copies.map((r) => `${r.spec.reason} → ${r.spec.targetNode}`).join(', '));
    assert.deepEqual(copies.map((r) => r.spec.targetNode).sort(), ['node-b', 'node-c']);
    for (const node of ['node-b', 'node-c'])
      assert.ok((await nodeImageDigests(env, node)).has(digest), `ctr on ${node} lists the image`);

    const drained = await kubectl(env, ['drain', 'node-a', '--ignore-daemonsets', '--timeout=120s']);
    assert.equal(drained.code, 0, drained.stderr);
    const [after] = await waitForRunningPods(env, ns.name, 'app', 1, { timeoutMs: 180_000 });
    assert.notEqual((after as V1Pod).spec?.nodeName, 'node-a');
    const records = await kubectl(env, [
      'get',
      'svr',
      '-n',
      ns.name,
      '-o',
      'jsonpath={range .items[*]}{.spec.purpose}/{.spec.reason}{"\\n"}{end}',
    ]);
    // Only protective records: the pod never waited for its image, so no rescue was needed.
    const kinds = records.stdout.trim().split('\n');
    assert.ok(kinds.includes('Protect/Evacuation'), records.stdout);
    assert.deepEqual(
      kinds.filter((k) => !k.startsWith('Protect/')),
      [],
      records.stdout,
    );
    const describe = await kubectl(env, ['describe', 'svr', '-n', ns.name, evacuation.metadata?.name ?? '']);
    assert.match(describe.stdout, /a node holding it is leaving the cluster/);
  });
});
