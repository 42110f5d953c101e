// A tag-only image: no node lists the tag (the holder pulled it by digest), so the digest must come from the source
// registry, which still serves the tag's manifest though it lost a layer (pulls fail). Allowed by the policy, tote
// resolves it there and salvages; not allowed, and with the registry empty, the record says plainly why it cannot act.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ensureCluster, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import { ensureTote } from '../support/tote.ts';
import {
  deleteBlobFromRegistryStorage,
  deployment,
  imageOnNodes,
  lostImage,
  scopedPolicy,
  waitForRecords,
  waitForRunningPods,
} from '../support/salvage.ts';
import { registries, registryDigest } from '../support/images.ts';
import { podsPath, waitForAny, waitingReason } from '../support/wait.ts';
import type { V1Pod } from '@kubernetes/client-node';

let env: ClusterEnv;

describe('tag resolution', () => {
  before(async () => {
    env = await ensureCluster();
    await ensureTote(env);
  });

  it('resolves a tag no node lists through the registry when the policy allows it', async (t) => {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, { tagResolution: { enabled: true } }, t);
    const image = await imageOnNodes(
      env,
      { repository: `tagres/${ns.name}`, layers: 2, layerSize: 128 * 1024 },
      ['node-a'],
      { byDigest: true },
    );
    const layer = image.platforms[0]?.layers[0];
    assert.ok(layer);
    deleteBlobFromRegistryStorage(env, layer.digest);
    // The registry still answers for the tag, so only a registry lookup can tell the digest.
    assert.equal(await registryDigest(registries(env).source, image.repository, image.tag), image.target.digest);
    const ref = image.reference(env.sourceRegistry);
    await deployment(env, ns.name, 'app', ref, ['node-b']);

    // The pull fails on the lost layer: the pod is stuck although the tag still resolves.
    await waitForAny<V1Pod>(
      env,
      podsPath(ns.name),
      (p) => /ErrImagePull|ImagePullBackOff/.test(waitingReason(p) ?? ''),
      {
        labelSelector: 'app=app',
        what: 'a pod stuck pulling',
      },
    );

    const [record] = await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Completed');
    assert.ok(record);
    assert.equal(record.status?.digest, image.target.digest);
    const resolved = record.status?.conditions?.find((c) => c.type === 'Resolved');
    assert.equal(resolved?.status, 'True');
    assert.equal(resolved?.reason, 'DigestFromRegistry', JSON.stringify(record.status?.conditions));
    assert.equal(record.status?.sourceNode, 'node-a');
    await waitForRunningPods(env, ns.name, 'app', 1);
  });

  it('cannot resolve a tag no node lists when tag resolution is off: NotActionable, said plainly', async (t) => {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, {}, t);
    const image = await lostImage(env, { repository: `tagres/${ns.name}`, layerSize: 64 * 1024 }, ['node-a'], {
      byDigest: true,
    });
    const ref = image.reference(env.sourceRegistry);
    await deployment(env, ns.name, 'app', ref, ['node-b']);

    const [record] = await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'NotActionable');
    assert.ok(record);
    assert.equal(record.status?.digest, undefined);
    const resolved = record.status?.conditions?.find((c) => c.type === 'Resolved');
    assert.equal(resolved?.status, 'False');
    assert.equal(resolved?.reason, 'DigestUnresolvable');
    assert.match(record.status?.message ?? '', /no node knows the digest of .*tagResolution\.enabled/);
    assert.ok(record.status?.message?.includes(ref), record.status?.message);
  });
});
