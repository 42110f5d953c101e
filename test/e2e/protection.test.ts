// Protecting the last copy before anything gets stuck (SalvagePolicy spec.protection), end to end on the local cluster
// with real agents and containerd: an image a running pod uses, gone from its registry, held by one node only, is copied
// to another node (replicate), as is one only a scaled-to-zero Deployment's template wants; and when the node holding
// the only copy is tainted for removal, its image is copied off it (evacuate). The records tell the story. Draining a node with real kubelets is test/e2e/real-protection.test.ts.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ensureCluster, kubectl } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import { testNamespace } from '../support/cluster.ts';
import { nodeHasImage, nodeImageLabels } from '../support/images.ts';
import { pollUntil, waitForObject, watchUntil } from '../support/wait.ts';
import type { CoreV1Event } from '@kubernetes/client-node';
import { ensureTote } from '../support/tote.ts';
import {
  backupPolicy,
  deployment,
  lostImage,
  scopedPolicy,
  skopeoBackupDigest,
  waitForRecords,
  waitForRunningPods,
} from '../support/salvage.ts';
import type { SalvagePolicy, SalvageRecord } from '../../src/api/index.ts';

let env: ClusterEnv;

const protective = (r: SalvageRecord) => r.spec.purpose === 'Protect';

describe('protection: copies of an endangered image before anything gets stuck', () => {
  before(async () => {
    env = await ensureCluster();
    await ensureTote(env);
  });

  it('replicates an image in use that only one node holds and no registry serves', async (t) => {
    const ns = await testNamespace(env, t);
    const policy = await scopedPolicy(env, ns, { protection: { minCopies: 2 } }, t);
    const image = await lostImage(env, { repository: `protect/${ns.name}`, tag: 'v1', layers: 2 }, ['node-a']);
    const ref = image.reference(env.sourceRegistry);
    await deployment(env, ns.name, 'app', ref, ['node-a']);
    await waitForRunningPods(env, ns.name, 'app', 1);

    const [record] = await waitForRecords(env, ns.name, 1, (r) => protective(r) && r.status?.phase === 'Completed');
    assert.ok(record);
    assert.equal(record.spec.reason, 'Endangered');
    assert.equal(record.spec.digest, image.target.digest);
    assert.equal(record.status?.sourceNode, 'node-a');
    assert.notEqual(record.spec.targetNode, 'node-a');
    assert.ok(
      await nodeHasImage(env.nodeSockets.get(record.spec.targetNode) ?? '', ref),
      `${record.spec.targetNode}'s containerd holds the image under the pod's reference`,
    );
    assert.match(record.status?.message ?? '', /protective copy/);

    // The policy's status tells what its survey found: one image in use, no longer endangered.
    await waitForObject<SalvagePolicy & { metadata: object }>(
      env,
      '/apis/tote.dev/v1alpha1/salvagepolicies',
      policy,
      (p) => p?.status?.protectionSurvey?.imagesInUse === 1 && p.status.protectionSurvey.endangeredImages === 0,
      { what: `policy ${policy} status.protectionSurvey: 1 image in use, none endangered` },
    );

    // Both copies are pinned against the kubelet's image GC (node-a's by the first survey, the new one by the next).
    for (const node of ['node-a', record.spec.targetNode]) {
      await pollUntil(
        async () => {
          const labels = [...(await nodeImageLabels(env.nodeSockets.get(node) ?? '', image.target.digest)).values()];
          return labels.length > 0 && labels.every((l) => l['io.cri-containerd.pinned'] === 'pinned')
            ? true
            : undefined;
        },
        {
          what: `${image.target.digest} pinned on ${node}`,
          describe: async () =>
            JSON.stringify([...(await nodeImageLabels(env.nodeSockets.get(node) ?? '', image.target.digest))]),
        },
      );
    }

    // The local cluster's containerd 1.6.20 ignores such pins: node-a says so, where `kubectl describe node` shows it.
    assert.equal(env.nodeContainerd.get('node-a'), '1.6');
    await watchUntil<CoreV1Event, true>(
      env,
      '/api/v1/namespaces/default/events',
      { fieldSelector: 'involvedObject.kind=Node,involvedObject.name=node-a,reason=PinsIgnored' },
      (events) => (events.size > 0 ? true : undefined),
      { what: 'a PinsIgnored Event on node-a' },
    );
    const described = await kubectl(env, ['describe', 'node', 'node-a']);
    assert.match(described.stdout, /PinsIgnored/);

    // Two copies now: no third record, whatever the next surveys find.
    const table = await kubectl(env, ['get', 'svr', '-n', ns.name]);
    assert.match(table.stdout, /Protect\s+Completed\s+node-a\s+node-[bc]/, table.stdout);
    assert.equal(table.stdout.trim().split('\n').length, 2, table.stdout);
  });

  it('evacuates the only copy off a node tainted for removal', async (t) => {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, { protection: { minCopies: 1 } }, t);
    const image = await lostImage(env, { repository: `evacuate/${ns.name}`, tag: 'v1', layers: 2 }, ['node-a']);
    const ref = image.reference(env.sourceRegistry);
    await deployment(env, ns.name, 'app', ref, ['node-a']);
    await waitForRunningPods(env, ns.name, 'app', 1);

    // cluster-autoscaler's scale-down taint (as PreferNoSchedule, so the stories running beside this one still schedule
    // on node-a: tote reads the key, whatever the effect).
    const taint = 'ToBeDeletedByClusterAutoscaler=1700000000:PreferNoSchedule';
    t.after(async () => {
      await kubectl(env, ['taint', 'node', 'node-a', `${taint}-`]);
    });
    const tainted = await kubectl(env, ['taint', 'node', 'node-a', taint, '--overwrite']);
    assert.equal(tainted.code, 0, tainted.stderr);

    const [record] = await waitForRecords(env, ns.name, 1, (r) => protective(r) && r.status?.phase === 'Completed');
    assert.ok(record);
    assert.equal(record.spec.reason, 'Evacuation');
    assert.equal(record.status?.sourceNode, 'node-a', 'the leaving node serves as the source');
    assert.notEqual(record.spec.targetNode, 'node-a');
    assert.ok(await nodeHasImage(env.nodeSockets.get(record.spec.targetNode) ?? '', ref));
    const history = (record.status?.history ?? []).map((h) => h.message).join('\n');
    assert.match(history, /a node holding it is leaving the cluster/);
  });

  it('with a backup registry, pushes an endangered image at once from the node holding it, even with nowhere to copy it', async (t) => {
    const ns = await testNamespace(env, t);
    await backupPolicy(env, ns, `${env.backupRegistry}/protected`, { protection: { minCopies: 2 } }, t);
    const image = await lostImage(env, { repository: `push/${ns.name}`, tag: 'v1', layers: 2 }, ['node-a']);
    const ref = image.reference(env.sourceRegistry);
    // node-b and node-c about to be removed (cluster-autoscaler's taint, PreferNoSchedule so stories beside this one
    // still schedule there): no node qualifies for a second copy, so only the push can protect the image.
    const taint = 'ToBeDeletedByClusterAutoscaler=1700000000:PreferNoSchedule';
    t.after(async () => {
      await kubectl(env, ['taint', 'node', 'node-b', 'node-c', `${taint}-`]);
    });
    const tainted = await kubectl(env, ['taint', 'node', 'node-b', 'node-c', taint, '--overwrite']);
    assert.equal(tainted.code, 0, tainted.stderr);
    await deployment(env, ns.name, 'app', ref, ['node-a']);
    await waitForRunningPods(env, ns.name, 'app', 1);

    const [record] = await waitForRecords(env, ns.name, 1, (r) => protective(r) && r.status?.phase === 'Completed');
    assert.ok(record);
    assert.equal(record.spec.targetNode, 'node-a', 'the record sits where the image is: nothing to move');
    assert.equal(record.status?.backup?.result, 'Pushed', JSON.stringify(record.status?.backup));
    assert.equal(record.status?.progress?.transferredBytes ?? 0, 0, 'no byte moved');
    const reference = record.status?.backup?.reference ?? '';
    assert.ok(reference.endsWith(`@${image.target.digest}`), reference);
    assert.equal(
      await skopeoBackupDigest(env, reference),
      image.target.digest,
      'the backup registry serves the endangered image',
    );
  });

  it('protects the image of a Deployment scaled to zero, which no pod runs', async (t) => {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, { protection: { minCopies: 2 } }, t);
    const image = await lostImage(env, { repository: `template/${ns.name}`, tag: 'v1', layers: 1 }, ['node-c'], {
      byDigest: true,
    });
    const ref = image.digestReference(env.sourceRegistry);
    await deployment(env, ns.name, 'idle', ref, ['node-a', 'node-b', 'node-c'], 0);

    const [record] = await waitForRecords(env, ns.name, 1, (r) => protective(r) && r.status?.phase === 'Completed');
    assert.ok(record);
    assert.equal(record.spec.imageRef, ref, 'named as the template names it');
    assert.equal(record.status?.sourceNode, 'node-c');
    assert.ok(await nodeHasImage(env.nodeSockets.get(record.spec.targetNode) ?? '', ref));
  });

  it('a DetectOnly policy reports the endangered image in its status and copies nothing', async (t) => {
    const ns = await testNamespace(env, t);
    const policy = await scopedPolicy(env, ns, { mode: 'DetectOnly', protection: { minCopies: 2 } }, t);
    const image = await lostImage(env, { repository: `radar/${ns.name}`, tag: 'v1', layers: 1 }, ['node-a']);
    await deployment(env, ns.name, 'app', image.reference(env.sourceRegistry), ['node-a']);
    await waitForRunningPods(env, ns.name, 'app', 1);
    await waitForObject<SalvagePolicy & { metadata: object }>(
      env,
      '/apis/tote.dev/v1alpha1/salvagepolicies',
      policy,
      (p) => p?.status?.protectionSurvey?.endangeredImages === 1,
      { what: `policy ${policy} status.protectionSurvey.endangeredImages 1` },
    );
    const records = await kubectl(env, ['get', 'svr', '-n', ns.name, '-o', 'name']);
    assert.equal(records.stdout.trim(), '', 'no protective record');
    const labels = [...(await nodeImageLabels(env.nodeSockets.get('node-a') ?? '', image.target.digest)).values()];
    assert.ok(labels.length > 0 && labels.every((l) => l['io.cri-containerd.pinned'] === undefined), 'no pin');
  });
});
