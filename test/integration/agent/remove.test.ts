// RemoveImage against a real containerd: every record of the digest goes, GC collects what only that image used, and
// with verify_blobs a corrupt blob that another image still references is deleted too.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { seedImage } from '../../support/containerd-images.ts';
import { buildImage, buildLayer } from '../../support/images.ts';
import { makeCluster } from './harness.ts';
import type { Cluster, TestNode } from './harness.ts';

describe('agent: RemoveImage', () => {
  let cluster: Cluster;
  let node: TestNode;
  before(async () => {
    cluster = makeCluster();
    node = await cluster.startNode('node-rm');
  });
  after(async () => {
    await cluster?.stop();
  });

  it('deletes every record of the digest, lets GC collect its own blobs, and deletes a corrupt shared blob', async () => {
    const shared = buildLayer({ size: 200_000, seed: 'remove-shared' });
    const broken = buildImage({ repository: 'salvage/broken', tag: '1', base: [shared], layers: [{ size: 100_000 }] });
    const neighbour = buildImage({
      repository: 'salvage/neighbour',
      tag: '1',
      base: [shared],
      layers: [{ size: 1000 }],
    });
    await seedImage(node.containerd, broken, { name: 'registry.test/salvage/broken:1' });
    await seedImage(node.containerd, neighbour, { name: 'registry.test/salvage/neighbour:1' });
    const file = join(node.daemon.root, 'io.containerd.content.v1.content', 'blobs', 'sha256', shared.digest.slice(7));
    const bytes = readFileSync(file);
    bytes[100]! ^= 0xff;
    writeFileSync(file, bytes);

    const res = await cluster.client(node).removeImage({ digest: broken.target.digest, verifyBlobs: true });
    const p = broken.platforms[0]!;
    assert.deepEqual(
      [...res.removedNames].sort(),
      [
        'registry.test/salvage/broken:1',
        `registry.test/salvage/broken@${broken.target.digest}`,
        p.config.digest,
      ].sort(),
    );
    assert.deepEqual(res.deletedBlobs, [shared.digest]);
    assert.deepEqual(await node.containerd.images.list([`target.digest==${broken.target.digest}`]), []);
    for (const d of [p.manifest.digest, p.config.digest, p.layers[1]!.digest, shared.digest]) {
      assert.equal(await node.containerd.content.info(d), undefined, `${d} is gone`);
    }
    assert.notEqual(
      await node.containerd.images.get('registry.test/salvage/neighbour:1'),
      undefined,
      'other records stay',
    );
  });
});
