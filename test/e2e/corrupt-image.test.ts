// CreateContainerError from missing content: the node has the image's record but lost a layer blob, so the kubelet
// finds the image and fails to create the container. tote removes the corrupt image and imports a complete copy.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ensureCluster, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import { ensureTote } from '../support/tote.ts';
import {
  deployment,
  lostImage,
  namespaceEvents,
  scopedPolicy,
  waitForRecords,
  waitForRunningPods,
} from '../support/salvage.ts';
import { deleteBlobsFromNode, nodeHasImage } from '../support/images.ts';
import { podsPath, waitForAny, waitingReason } from '../support/wait.ts';
import type { V1Pod } from '@kubernetes/client-node';

let env: ClusterEnv;

/** An image lost from its registry and held by `holders`, whose copy on node-b lost a layer blob (record kept). */
async function brokenOnNodeB(repository: string, holders: string[], layerSize: number) {
  const image = await lostImage(env, { repository, layers: 2, layerSize }, holders);
  const nodeB = env.nodeSockets.get('node-b') ?? '';
  const layer = image.platforms[0]?.layers[1];
  assert.ok(layer);
  await deleteBlobsFromNode(nodeB, [layer.digest]);
  return { image, ref: image.reference(env.sourceRegistry), nodeB };
}

describe('corrupt image', () => {
  before(async () => {
    env = await ensureCluster();
    await ensureTote(env);
  });

  it('CreateContainerError from a missing layer: the corrupt image is removed, a good copy imported, the pod runs', async (t) => {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, {}, t);
    const { image, ref, nodeB } = await brokenOnNodeB(`corrupt/${ns.name}`, ['node-a', 'node-b'], 128 * 1024);
    assert.ok(await nodeHasImage(nodeB, ref), 'the image record stays on node-b');

    await deployment(env, ns.name, 'app', ref, ['node-b']);
    const stuck = await waitForAny<V1Pod>(env, podsPath(ns.name), (p) => waitingReason(p) === 'CreateContainerError', {
      labelSelector: 'app=app',
      what: 'a pod in CreateContainerError',
    });
    assert.equal(stuck.spec?.nodeName, 'node-b');

    const [record] = await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Completed');
    assert.ok(record);
    assert.equal(record.spec.reason, 'CreateContainerError');
    assert.equal(record.status?.sourceNode, 'node-a');
    const reasons = (record.status?.history ?? []).map((h) => h.reason);
    assert.ok(reasons.includes('CorruptImageRemoved'), reasons.join(' → '));
    await waitForRunningPods(env, ns.name, 'app', 1);

    const events = await namespaceEvents(env, ns.name);
    const corrupt = events.filter((e) => e.reason === 'CorruptImage');
    assert.ok(corrupt.length > 0, JSON.stringify(events.map((e) => e.reason)));
    assert.ok(corrupt.some((e) => e.message.includes(image.target.digest)));
  });

  it('a broken copy with no good copy anywhere else is left in place: the record ends NotActionable', async (t) => {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, {}, t);
    const { ref, nodeB } = await brokenOnNodeB(`corrupt-only/${ns.name}`, ['node-b'], 64 * 1024);

    await deployment(env, ns.name, 'app', ref, ['node-b']);
    const [record] = await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'NotActionable');
    const reasons = (record?.status?.history ?? []).map((h) => h.reason);
    assert.ok(!reasons.includes('CorruptImageRemoved'), reasons.join(' → '));
    assert.ok(await nodeHasImage(nodeB, ref), 'node-b keeps what it had: removing it would only lose what is left');
  });
});
