// Push and resolve against a real docker-registry with htpasswd auth over TLS; skopeo checks the result independently.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { isToteError } from '../../../src/api/errors.ts';
import type { PushProgress, RegistryClientOptions } from '../../../src/registry/index.ts';
import {
  credentialsFromDockerConfig,
  MediaTypes,
  RegistryClient,
  RegistryError,
  RegistryMetrics,
  staticCredentials,
} from '../../../src/registry/index.ts';
import { createTestCa, startRegistry } from '../../support/registry-process.ts';
import type { RunningRegistry, TestCa } from '../../support/registry-process.ts';
import { buildImage, buildIndex, memorySource } from './image-fixtures.ts';
import type { TestImage } from './image-fixtures.ts';
import { copyToDir, deleteImage, inspectRaw } from './skopeo.ts';

const user = { username: 'backup', password: 'correct horse battery staple' };

describe('registry client against docker-registry (htpasswd, TLS)', () => {
  let ca: TestCa;
  let registry: RunningRegistry;
  let metricsRegistry: Registry;
  let metrics: RegistryMetrics;
  const clients: RegistryClient[] = [];

  const client = (overrides: Partial<RegistryClientOptions> = {}): RegistryClient => {
    const c = new RegistryClient({
      ca: registry.caPem!,
      credentials: staticCredentials({ kind: 'basic', ...user }),
      metrics,
      timeoutMs: 10_000,
      sleep: async () => undefined,
      ...overrides,
    });
    clients.push(c);
    return c;
  };

  const counter = async (name: string, labels: Record<string, string>): Promise<number> => {
    const metric = await metricsRegistry.getSingleMetric(name)!.get();
    const value = metric.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
    return value?.value ?? 0;
  };

  before(async () => {
    ca = await createTestCa();
    registry = await startRegistry({ ca, users: [user] });
    metricsRegistry = new Registry();
    metrics = new RegistryMetrics(metricsRegistry);
  });

  after(async () => {
    for (const c of clients) c.close();
    await registry?.stop();
  });

  const assertSkopeoSees = async (ref: string, image: TestImage) => {
    const raw = await inspectRaw(registry, ref, user);
    assert.deepEqual(raw, Buffer.from(image.manifests.get(image.root.digest)!), 'manifest bytes served as pushed');
    const copied = await copyToDir(registry, ref, user);
    assert.equal(copied.manifestDigest, image.root.digest);
    for (const digest of [...image.blobs.keys(), ...image.manifests.keys()]) {
      assert.ok(copied.fileDigests.has(digest), `skopeo fetched ${digest}`);
    }
  };

  test('pushes a multi-layer image whose manifest and blob digests skopeo reads back unchanged', async () => {
    const image = buildImage({ seed: 1, layers: 4, layerSize: 20_000 });
    const ref = `${registry.host}/backup/app:v1`;
    const result = await client().push(ref, image.root, memorySource(image));
    assert.equal(result.digest, image.root.digest);
    assert.equal(result.reference, `${registry.host}/backup/app@${image.root.digest}`);
    assert.equal(result.tag, 'v1');
    assert.equal(result.blobsUploaded, 5);
    assert.equal(result.manifestsUploaded, 1);
    await assertSkopeoSees(ref, image);
  });

  test('pushes a multi-platform index children first, byte for byte', async () => {
    const index = buildIndex([
      buildImage({ seed: 10, layers: 2, architecture: 'amd64' }),
      buildImage({ seed: 20, layers: 3, architecture: 'arm64' }),
    ]);
    const ref = `${registry.host}/backup/multi:2.0`;
    const order: string[] = [];
    const result = await client().push(ref, index.root, memorySource(index), {
      onProgress: (e) => {
        if (e.type === 'manifest') order.push(e.digest);
      },
    });
    assert.equal(result.digest, index.root.digest);
    assert.equal(result.manifestsUploaded, 3);
    assert.equal(order.at(-1), index.root.digest, 'the index goes last');
    await assertSkopeoSees(ref, index);
  });

  test('a second push of the same image uploads no blob bytes and reads no blob', async () => {
    const image = buildImage({ seed: 2, layers: 3 });
    const ref = `${registry.host}/backup/again:v1`;
    await client().push(ref, image.root, memorySource(image));
    const uploadedBefore = await counter('tote_registry_push_blob_bytes_total', { outcome: 'uploaded' });
    const skippedBefore = await counter('tote_registry_push_blob_bytes_total', { outcome: 'skipped' });
    const source = memorySource(image);
    const events: PushProgress[] = [];
    const result = await client().push(ref, image.root, source, { onProgress: (e) => events.push(e) });
    assert.equal(result.bytesUploaded, 0);
    assert.equal(result.blobsUploaded, 0);
    assert.equal(result.blobsSkipped, 4);
    assert.equal(result.manifestsSkipped, 1);
    assert.equal(source.opened.size, 0, 'no blob was read from the source');
    assert.equal(events.filter((e) => e.type === 'blob-bytes').length, 0);
    assert.equal(await counter('tote_registry_push_blob_bytes_total', { outcome: 'uploaded' }), uploadedBefore);
    const total = [...image.blobs.values()].reduce((n, b) => n + b.length, 0);
    assert.equal(await counter('tote_registry_push_blob_bytes_total', { outcome: 'skipped' }), skippedBefore + total);
    assert.ok((await counter('tote_registry_pushes_total', { result: 'success' })) >= 2);
  });

  test('uploads large blobs in PATCH chunks and commits the verified digest', async () => {
    const image = buildImage({ seed: 3, layers: 2, layerSize: 200_000 });
    const ref = `${registry.host}/backup/chunked:v1`;
    const chunks: Array<{ digest: string; start: number; end: number }> = [];
    const result = await client({ monolithicThreshold: 50_000, chunkSize: 64 * 1024 }).push(
      ref,
      image.root,
      memorySource(image, { chunk: 10_000 }),
      { onProgress: (e) => e.type === 'chunk' && chunks.push(e) },
    );
    assert.equal(result.blobsUploaded, 3);
    const layer = image.blobDigests[1]!;
    const layerChunks = chunks.filter((c) => c.digest === layer);
    const size = image.blobs.get(layer)!.length;
    assert.equal(layerChunks.length, Math.ceil(size / (64 * 1024)));
    assert.deepEqual(layerChunks.at(-1)?.end, size - 1);
    await assertSkopeoSees(ref, image);
  });

  test('mounts blobs from another repository instead of uploading them', async () => {
    const image = buildImage({ seed: 4, layers: 2 });
    await client().push(`${registry.host}/backup/origin:v1`, image.root, memorySource(image));
    const source = memorySource(image);
    const result = await client().push(`${registry.host}/backup/mounted:v1`, image.root, source, {
      mountFrom: ['backup/origin'],
    });
    assert.equal(result.blobsMounted, 3);
    assert.equal(result.bytesUploaded, 0);
    assert.equal(source.opened.size, 0);
    await assertSkopeoSees(`${registry.host}/backup/mounted:v1`, image);
  });

  test('refuses to send a blob whose bytes do not match its digest', async () => {
    const image = buildImage({ seed: 5, layers: 1 });
    const layer = image.blobDigests[1]!;
    const tampered = Buffer.from(image.blobs.get(layer)!);
    tampered[100] = tampered[100]! ^ 0xff;
    image.blobs.set(layer, tampered);
    const ref = `${registry.host}/backup/tampered:v1`;
    await assert.rejects(client().push(ref, image.root, memorySource(image)), (err) => {
      assert.ok(isToteError(err, 'integrity'), String(err));
      assert.equal(err.reason, 'BlobDigestMismatch');
      return true;
    });
    const fresh = client({ credentials: staticCredentials({ kind: 'basic', ...user }) });
    await assert.rejects(fresh.resolve(ref), (err) => isToteError(err, 'not-found'));
  });

  test('an index whose child is missing from the source is refused before anything is sent', async () => {
    const index = buildIndex([buildImage({ seed: 6, layers: 1 }), buildImage({ seed: 7, layers: 1 })]);
    const missing = [...index.manifests.keys()].find((d) => d !== index.root.digest)!;
    await assert.rejects(
      client().push(`${registry.host}/backup/partial:v1`, index.root, memorySource(index, { omit: [missing] })),
      (err) => isToteError(err, 'terminal') && err.reason === 'IncompleteImage',
    );
  });

  test("a registry 4xx carries the registry's own error code", async () => {
    const index = buildIndex([buildImage({ seed: 8, layers: 1 }), buildImage({ seed: 9, layers: 1 })]);
    const missing = [...index.manifests.keys()].find((d) => d !== index.root.digest)!;
    await assert.rejects(
      client().push(`${registry.host}/backup/partial:v2`, index.root, memorySource(index, { omit: [missing] }), {
        allowPartialIndex: true,
      }),
      (err) => {
        assert.ok(err instanceof RegistryError, String(err));
        assert.equal(err.status, 400);
        assert.equal(err.code, 'MANIFEST_BLOB_UNKNOWN');
        assert.equal(err.kind, 'terminal');
        assert.match(err.message, /MANIFEST_BLOB_UNKNOWN/);
        return true;
      },
    );
  });

  test('resolves tags of both media-type families to digest, media type and size', async () => {
    const c = client();
    const cases: Array<[string, TestImage, string]> = [
      ['oci-image', buildImage({ seed: 30, layers: 1, flavour: 'oci' }), MediaTypes.ociManifest],
      ['docker-image', buildImage({ seed: 31, layers: 1, flavour: 'docker' }), MediaTypes.dockerManifest],
      ['oci-index', buildIndex([buildImage({ seed: 32, layers: 1 })], 'oci'), MediaTypes.ociIndex],
      [
        'docker-list',
        buildIndex([buildImage({ seed: 33, layers: 1, flavour: 'docker' })], 'docker'),
        MediaTypes.dockerManifestList,
      ],
    ];
    for (const [name, image, mediaType] of cases) {
      const ref = `${registry.host}/resolve/${name}:v1`;
      await c.push(ref, image.root, memorySource(image));
      assert.deepEqual(await c.resolve(ref), { digest: image.root.digest, mediaType, size: image.root.size }, name);
      assert.deepEqual(
        await c.resolve(`${registry.host}/resolve/${name}@${image.root.digest}`),
        { digest: image.root.digest, mediaType, size: image.root.size },
        `${name} by digest`,
      );
    }
  });

  test('a deleted tag resolves to not-found', async () => {
    const image = buildImage({ seed: 40, layers: 1 });
    const ref = `${registry.host}/resolve/deleted:v1`;
    const c = client();
    await c.push(ref, image.root, memorySource(image));
    assert.equal((await c.resolve(ref)).digest, image.root.digest);
    await deleteImage(registry, ref, user);
    await assert.rejects(c.resolve(ref), (err) => {
      assert.ok(isToteError(err, 'not-found'), String(err));
      assert.equal(err.reason, 'ManifestNotFound');
      assert.match(err.message, /resolve\/deleted/);
      return true;
    });
  });

  test('wrong or missing credentials give unauthorized', async () => {
    const image = buildImage({ seed: 50, layers: 1 });
    const ref = `${registry.host}/resolve/private:v1`;
    await client().push(ref, image.root, memorySource(image));
    const wrong = client({
      credentials: credentialsFromDockerConfig({
        auths: {
          [`https://${registry.host}`]: {
            auth: Buffer.from(`${user.username}:wrong`).toString('base64'),
          },
        },
      }),
    });
    await assert.rejects(wrong.resolve(ref), (err) => {
      assert.ok(isToteError(err, 'unauthorized'), String(err));
      assert.equal(err.reason, 'RegistryCredentialsRejected');
      assert.doesNotMatch(err.message, /wrong/);
      return true;
    });
    const anonymous = client({ credentials: staticCredentials(undefined) });
    await assert.rejects(anonymous.resolve(ref), (err) => isToteError(err, 'unauthorized'));
    await assert.rejects(anonymous.push(`${registry.host}/resolve/nope:v1`, image.root, memorySource(image)), (err) =>
      isToteError(err, 'unauthorized'),
    );
  });

  test('does not trust the registry without the test CA', async () => {
    const untrusting = new RegistryClient({ credentials: staticCredentials({ kind: 'basic', ...user }) });
    clients.push(untrusting);
    await assert.rejects(untrusting.resolve(`${registry.host}/resolve/oci-image:v1`), (err) => {
      return isToteError(err, 'terminal') && err.reason === 'RegistryTLSError';
    });
  });
});
