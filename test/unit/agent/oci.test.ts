import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { isToteError } from '../../../src/api/errors.ts';
import { normalizePlatform, planImage, platformRank, selectManifest } from '../../../src/agent/oci.ts';
import type { OciDescriptor, Platform } from '../../../src/agent/oci.ts';

const digestOf = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const manifestType = 'application/vnd.oci.image.manifest.v1+json';
const entry = (name: string, platform?: Platform, annotations?: Record<string, string>): OciDescriptor => ({
  mediaType: manifestType,
  digest: digestOf(name),
  size: 100,
  ...(platform ? { platform } : {}),
  ...(annotations ? { annotations } : {}),
});

describe('platform normalisation and matching', () => {
  const norm: [Platform, Platform][] = [
    [
      { os: 'linux', architecture: 'x86_64' },
      { os: 'linux', architecture: 'amd64' },
    ],
    [
      { os: 'linux', architecture: 'aarch64', variant: 'v8' },
      { os: 'linux', architecture: 'arm64' },
    ],
    [
      { os: 'linux', architecture: 'arm' },
      { os: 'linux', architecture: 'arm', variant: 'v7' },
    ],
    [
      { os: 'Linux', architecture: 'armhf' },
      { os: 'linux', architecture: 'arm', variant: 'v7' },
    ],
    [
      { os: 'linux', architecture: 'amd64', variant: 'v1' },
      { os: 'linux', architecture: 'amd64' },
    ],
  ];
  for (const [input, want] of norm)
    it(`${JSON.stringify(input)} normalises`, () => assert.deepEqual(normalizePlatform(input), want));

  const amd64 = { os: 'linux', architecture: 'amd64' };
  const arm64 = { os: 'linux', architecture: 'arm64' };
  it('ranks exact matches first and refuses other OSes and architectures', () => {
    assert.equal(platformRank(amd64, amd64), 0);
    assert.ok((platformRank(amd64, { os: 'linux', architecture: '386' }) ?? -1) > 0);
    assert.equal(platformRank(amd64, arm64), undefined);
    assert.equal(platformRank(amd64, { os: 'windows', architecture: 'amd64' }), undefined);
    assert.equal(
      platformRank(
        { os: 'linux', architecture: 'arm', variant: 'v6' },
        { os: 'linux', architecture: 'arm', variant: 'v7' },
      ),
      undefined,
    );
  });

  it('selects the node platform, skipping attestations and other architectures', () => {
    const list = [
      entry('att', { os: 'unknown', architecture: 'unknown' }, { 'vnd.docker.reference.type': 'attestation-manifest' }),
      entry('i386', { os: 'linux', architecture: '386' }),
      entry('arm', arm64),
      entry('amd', amd64),
    ];
    assert.equal(selectManifest(list, amd64)?.digest, digestOf('amd'));
    assert.equal(selectManifest(list, arm64)?.digest, digestOf('arm'));
    assert.equal(selectManifest(list.slice(0, 2), amd64)?.digest, digestOf('i386'));
    assert.equal(selectManifest([list[0]!], amd64), undefined);
  });
});

describe('planImage', () => {
  const layer = (n: number) => ({
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    digest: digestOf(`layer${n}`),
    size: 1000 + n,
  });
  const config = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf('config'), size: 50 };
  const manifestBytes = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: manifestType, config, layers: [layer(0), layer(1), layer(0)] }),
  );
  const manifest: OciDescriptor = {
    mediaType: manifestType,
    digest: digestOf(manifestBytes.toString()),
    size: manifestBytes.length,
    platform: { os: 'linux', architecture: 'amd64' },
  };
  const indexBytes = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [manifest] }),
  );
  const index: OciDescriptor = {
    mediaType: 'application/vnd.oci.image.index.v1+json',
    digest: digestOf(indexBytes.toString()),
    size: indexBytes.length,
  };
  const docs = new Map([
    [index.digest, indexBytes],
    [manifest.digest, manifestBytes],
  ]);
  const read = async (d: OciDescriptor) => docs.get(d.digest) ?? Buffer.alloc(0);

  it('lists index, manifest, config and each layer once, with the total size', async () => {
    const plan = await planImage(index, { os: 'linux', architecture: 'amd64' }, read);
    assert.deepEqual(
      plan.blobs.map((b) => b.role),
      ['index', 'manifest', 'config', 'layer', 'layer'],
    );
    assert.equal(plan.totalSize, index.size + manifest.size + config.size + 1000 + 1001);
    assert.equal(plan.layers.length, 3, 'the manifest keeps its layer order for the gc.ref labels');
  });

  it('refuses a platform the index does not have', async () => {
    await assert.rejects(planImage(index, { os: 'linux', architecture: 's390x' }, read), (err: unknown) =>
      isToteError(err, 'not-found'),
    );
  });

  it('refuses a document whose mediaType contradicts its descriptor', async () => {
    await assert.rejects(
      planImage(
        { ...manifest, mediaType: 'application/vnd.docker.distribution.manifest.v2+json' },
        { os: 'linux', architecture: 'amd64' },
        read,
      ),
      (err: unknown) => isToteError(err, 'integrity'),
    );
  });
});
