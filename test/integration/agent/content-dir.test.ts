// The direct data path's fallbacks, against real containerd: an agent given a directory that is not its containerd's
// content store (a wrong mount, another root) must still import correctly through the content API, and a source whose
// directory lacks a blob file must serve it through the API.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { hostPlatform, seedImage, sha256 } from '../../support/containerd-images.ts';
import { buildImage } from '../../support/images.ts';
import type { TestImage } from '../../support/images.ts';
import { tempDir } from '../../support/temp-dirs.ts';
import { makeCluster } from './harness.ts';
import type { Cluster, TestNode } from './harness.ts';

describe('agent: content directory fallbacks', () => {
  let cluster: Cluster;
  let a: TestNode;
  let b: TestNode;
  /** A directory that looks usable but is no containerd's store. */
  const strangerDir = tempDir('tote-not-content-');

  before(async () => {
    cluster = makeCluster();
    // node-a's agent reads from an empty directory: every blob file is "missing" there.
    a = await cluster.startNode('node-a', { contentDir: tempDir('tote-empty-content-') });
    b = await cluster.startNode('node-b', { contentDir: strangerDir });
  });
  after(async () => {
    await cluster?.stop();
  });

  async function importFromA(image: TestImage, name: string) {
    return cluster.client(b).import({
      digest: image.target.digest,
      sourceAddress: a.agent.address,
      sourceNode: a.name,
      token: cluster.token({ digest: image.target.digest, source: a.name, target: b.name }),
      names: [name],
    });
  }

  async function assertBlobsOnB(image: TestImage) {
    const p =
      image.platforms.find((x) => x.platform.architecture === hostPlatform().architecture) ?? image.platforms[0]!;
    for (const blob of [p.manifest, p.config, ...p.layers]) {
      const parts: Uint8Array[] = [];
      for await (const part of b.containerd.content.read(blob.digest)) parts.push(part);
      assert.equal(sha256(Buffer.concat(parts)), blob.digest, `${blob.digest} is in node-b's containerd`);
    }
  }

  it('imports through the content API when containerd does not adopt a placed file, and stops placing files', async () => {
    const first = buildImage({ repository: 'fallback/one', tag: '1', layers: [{ size: 1_500_000 }, { size: 40_000 }] });
    await seedImage(a.containerd, first, { name: 'registry.test/fallback/one:1' });
    const done = await importFromA(first, 'registry.test/fallback/one:1');
    assert.equal(done.imageNames.includes('registry.test/fallback/one:1'), true);
    await assertBlobsOnB(first);
    const placed = readdirSync(join(strangerDir, 'blobs', 'sha256'));
    // Blobs fetched in parallel were placed before the first adoption showed that containerd ignores the directory.
    assert.ok(placed.length >= 1 && placed.length <= 3, `placed ${placed.length} of config + 2 layers`);

    const second = buildImage({ repository: 'fallback/two', tag: '1', layers: [{ size: 900_000 }] });
    await seedImage(a.containerd, second, { name: 'registry.test/fallback/two:1' });
    await importFromA(second, 'registry.test/fallback/two:1');
    await assertBlobsOnB(second);
    assert.deepEqual(readdirSync(join(strangerDir, 'blobs', 'sha256')), placed, 'no file placed after the fallback');
  });
});
