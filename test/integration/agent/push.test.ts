// PushImage against a real registry (Debian's docker-registry with TLS and htpasswd auth): the backup is addressable
// by the node's own digest, its index and manifests byte-identical, and every blob is there.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { isToteError } from '../../../src/api/errors.ts';
import { seedImage, hostPlatform } from '../../support/containerd-images.ts';
import { buildImage } from '../../support/images.ts';
import { createTestCa, startRegistry } from '../../support/registry-process.ts';
import type { RunningRegistry } from '../../support/registry-process.ts';
import { makeCluster } from './harness.ts';
import type { Cluster, TestNode } from './harness.ts';

const user = { username: 'backup', password: 'backup-secret' };

function head(registry: RunningRegistry, path: string, accept: string): Promise<{ status: number; digest?: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${registry.url}${path}`,
      {
        method: 'HEAD',
        ca: registry.caPem,
        headers: {
          accept,
          authorization: `Basic ${Buffer.from(`${user.username}:${user.password}`).toString('base64')}`,
        },
        timeout: 10_000,
      },
      (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, digest: res.headers['docker-content-digest'] as string | undefined });
      },
    );
    req.on('error', reject).on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

describe('agent: PushImage to a backup registry', () => {
  let cluster: Cluster;
  let node: TestNode;
  let registry: RunningRegistry;

  before(async () => {
    cluster = makeCluster();
    node = await cluster.startNode('node-push');
    registry = await startRegistry({ ca: await createTestCa(), users: [user] });
  });
  after(async () => {
    await registry?.stop();
    await cluster?.stop();
  });

  it('pushes a multi-platform image by digest with every blob and byte-identical documents', async () => {
    const image = buildImage({
      repository: 'salvage/pushed',
      tag: '1',
      layers: [{ size: 300_000 }, { size: 1_200_000 }],
      platforms: [hostPlatform(), { os: 'linux', architecture: 'riscv64' }],
    });
    await seedImage(node.containerd, image, { name: 'registry.test/salvage/pushed:1' });
    const done = await cluster.client(node).pushImage({
      digest: image.target.digest,
      reference: `${registry.host}/backup/pushed:1`,
      username: user.username,
      password: user.password,
      caPem: registry.caPem,
    });
    assert.equal(done.done, true);
    assert.equal(done.pushedReference, `${registry.host}/backup/pushed@${image.target.digest}`);
    assert.equal(done.pushedTag, '1');
    const total = [...image.blobs.values()]
      .filter((b) => !b.mediaType.includes('manifest') && !b.mediaType.includes('index'))
      .reduce((s, b) => s + b.size, 0);
    assert.equal(done.bytesPushed + done.bytesSkipped, total);

    const tagged = await head(registry, '/v2/backup/pushed/manifests/1', image.target.mediaType);
    assert.equal(tagged.status, 200);
    assert.equal(tagged.digest, image.target.digest, 'the backup is known by the source digest');
    for (const p of image.platforms) {
      assert.equal(
        (await head(registry, `/v2/backup/pushed/manifests/${p.manifest.digest}`, p.manifest.mediaType)).status,
        200,
      );
      for (const blob of [p.config, ...p.layers]) {
        assert.equal(
          (await head(registry, `/v2/backup/pushed/blobs/${blob.digest}`, '*/*')).status,
          200,
          `blob ${blob.digest}`,
        );
      }
    }
  });

  it('reports wrong registry credentials as unauthorized', async () => {
    const image = buildImage({ repository: 'salvage/denied', tag: '1', layers: [{ size: 1000 }] });
    await seedImage(node.containerd, image, { name: 'registry.test/salvage/denied:1' });
    await assert.rejects(
      cluster.client(node).pushImage({
        digest: image.target.digest,
        reference: `${registry.host}/backup/denied:1`,
        username: user.username,
        password: 'wrong',
        caPem: registry.caPem,
      }),
      (err: unknown) => isToteError(err, 'unauthorized'),
    );
  });
});
