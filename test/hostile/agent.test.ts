// Hostile input at the agent, against real containerd daemons and real agent servers with mTLS (the harness of
// test/integration/agent). Each case must be refused with a typed, explained error and leave the target's containerd
// exactly as it was (content, ingests, leases, image records). Cases already covered by
// test/integration/agent/node-to-node.test.ts (token from another key, expired token on Import, token for another
// target or image on Import, plan over the limit, Import from a non-controller, a controller certificate from another
// CA, corrupted source blob, stream longer than announced, source lacking layers) are not repeated here.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tlsConnect } from 'node:tls';
import { Registry } from 'prom-client';
import { isToteError } from '../../src/api/errors.ts';
import { connectAgent } from '../../src/agentapi/index.ts';
import type { AgentClient } from '../../src/agentapi/index.ts';
import { runImport } from '../../src/agent/index.ts';
import type { BlobPeer } from '../../src/agent/index.ts';
import { createAgentMetrics } from '../../src/agent/metrics.ts';
import { maxDocumentBytes } from '../../src/agent/oci.ts';
import type { Containerd } from '../../src/containerd/index.ts';
import { criManagedLabel, criManagedValue } from '../../src/containerd/index.ts';
import { hostPlatform, seedImage, sha256 } from '../support/containerd-images.ts';
import { buildImage, MediaTypes } from '../support/images.ts';
import type { Blob, TestImage } from '../support/images.ts';
import { makeCluster, makePki, snapshot } from '../integration/agent/harness.ts';
import type { Cluster, TestNode } from '../integration/agent/harness.ts';

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const blobOf = (mediaType: string, data: Buffer): Blob => ({
  mediaType,
  data,
  digest: sha256(data),
  size: data.length,
});

/** Writes raw blobs and one image record, as a registry pull of a hostile image would leave them. */
async function plant(containerd: Containerd, name: string, root: Blob, blobs: Blob[]): Promise<void> {
  const lease = `plant-${root.digest.slice(7, 23)}`;
  await containerd.leases.create(lease, new Date(Date.now() + 600_000));
  for (const b of [...blobs, root]) {
    try {
      const w = await containerd.content.openWriter(`plant-${b.digest}`, {
        total: b.size,
        expected: b.digest,
        lease,
      });
      for (let off = w.offset; off < b.size; off += 1 << 20) await w.write(b.data.subarray(off, off + (1 << 20)));
      await w.commit({});
    } catch (err) {
      if (!isToteError(err, 'already-exists')) throw err;
    }
  }
  await containerd.images.create({
    name,
    target: { mediaType: root.mediaType, digest: root.digest, size: root.size },
    labels: { [criManagedLabel]: criManagedValue },
  });
  // The lease stays (it expires in 10 minutes): planted blobs carry no gc.ref labels, so only it keeps them.
}

/** The image with its manifest padded by an annotation to `bytes` bytes (so its digest changes). */
function withHugeManifest(image: TestImage, bytes: number): { manifest: Blob; blobs: Blob[] } {
  const p = image.platforms[0]!;
  const doc = JSON.parse(p.manifest.data.toString('utf8')) as Record<string, unknown>;
  const base = JSON.stringify({ ...doc, annotations: { pad: '' } }).length;
  const manifest = blobOf(p.manifest.mediaType, json({ ...doc, annotations: { pad: 'x'.repeat(bytes - base) } }));
  return { manifest, blobs: [p.config, ...p.layers] };
}

describe('hostile input at the agent', () => {
  let cluster: Cluster;
  let a: TestNode;
  let b: TestNode;
  let ctl: AgentClient;
  /** node-b's agent identity reading from node-a, as a target would. */
  let asB: AgentClient;
  let image: TestImage;
  let other: TestImage;
  const name = 'registry.test/hostile/app:1';

  before(async () => {
    cluster = makeCluster();
    a = await cluster.startNode('node-a');
    b = await cluster.startNode('node-b');
    ctl = cluster.client(b);
    asB = connectAgent({
      address: a.agent.address,
      tls: cluster.pki.issue({ kind: 'agent', node: 'node-b' }),
      server: { kind: 'agent', node: 'node-a' },
    });
    image = buildImage({ repository: 'hostile/app', tag: '1', layers: [{ size: 300_000 }] });
    other = buildImage({ repository: 'hostile/other', tag: '1', layers: [{ size: 200_000 }] });
    await seedImage(a.containerd, image, { name });
    await seedImage(a.containerd, other, { name: 'registry.test/hostile/other:1' });
  });
  after(async () => {
    asB?.close();
    await cluster?.stop();
  });

  const layerOf = (img: TestImage) => img.platforms[0]!.layers[0]!.digest;
  const tokenFor = (digest: string, extra: Partial<Parameters<Cluster['token']>[0]> = {}) =>
    cluster.token({ digest, source: 'node-a', target: 'node-b', ...extra });

  async function readAll(client: AgentClient, args: { token: string; digest: string; offset?: number }) {
    let n = 0;
    for await (const chunk of client.readBlob(args, { timeoutMs: 10_000 })) n += chunk.length;
    return n;
  }

  async function refused(kind: string, reason: string | RegExp, run: () => Promise<unknown>) {
    const before = [await snapshot(a.containerd, a.daemon), await snapshot(b.containerd, b.daemon)];
    await assert.rejects(run(), (err: unknown) => {
      assert.ok(isToteError(err), String(err));
      assert.equal(err.kind, kind, `${err.reason}: ${err.message}`);
      if (typeof reason === 'string') assert.equal(err.reason, reason, err.message);
      else assert.match(err.reason, reason, err.message);
      assert.ok(err.message.length > 10, 'the error explains itself');
      return true;
    });
    assert.deepEqual(
      [await snapshot(a.containerd, a.daemon), await snapshot(b.containerd, b.daemon)],
      before,
      'containerd as before',
    );
  }

  // --- transfer tokens, replayed, forged, malformed -------------------------------------------------------------

  it('sanity: the honest read works', async () => {
    const size = image.platforms[0]!.layers[0]!.size;
    assert.equal(await readAll(asB, { token: tokenFor(image.target.digest), digest: layerOf(image) }), size);
  });

  it('refuses a valid token replayed for a blob of another image', () =>
    refused('unauthorized', 'BlobNotInImage', () =>
      readAll(asB, { token: tokenFor(image.target.digest), digest: layerOf(other) }),
    ));

  it('refuses a valid token replayed by another node (the certificate is not the token’s target)', async () => {
    const asC = connectAgent({
      address: a.agent.address,
      tls: cluster.pki.issue({ kind: 'agent', node: 'node-c' }),
      server: { kind: 'agent', node: 'node-a' },
    });
    try {
      await refused('unauthorized', 'TokenWrongTarget', () =>
        readAll(asC, { token: tokenFor(image.target.digest), digest: layerOf(image) }),
      );
    } finally {
      asC.close();
    }
  });

  it('refuses a token replayed to another source node', () =>
    refused('unauthorized', 'TokenWrongSource', () =>
      readAll(asB, { token: tokenFor(image.target.digest, { source: 'node-c' }), digest: layerOf(image) }),
    ));

  it('refuses a token replayed after its expiry (ReadBlob)', () =>
    refused('unauthorized', 'TokenExpired', () =>
      readAll(asB, {
        token: tokenFor(image.target.digest, { issuedAt: new Date(Date.now() - 300_000), ttlMs: 60_000 }),
        digest: layerOf(image),
      }),
    ));

  it('refuses a token issued in the future, and one that lives longer than an hour', async () => {
    await refused('unauthorized', 'TokenNotYetValid', () =>
      readAll(asB, {
        token: tokenFor(image.target.digest, { issuedAt: new Date(Date.now() + 600_000) }),
        digest: layerOf(image),
      }),
    );
    await refused('unauthorized', 'TokenTooLongLived', () =>
      readAll(asB, { token: tokenFor(image.target.digest, { ttlMs: 2 * 3600_000 }), digest: layerOf(image) }),
    );
  });

  it('refuses a forged token: claims rewritten under a genuine signature', () => {
    const [prefix, , signature] = tokenFor(image.target.digest).split('.');
    const claims = { dig: other.target.digest, src: 'node-a', tgt: 'node-b', iat: 0, exp: 4_000_000_000 };
    const forged = `${prefix}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`;
    return refused('unauthorized', 'TokenSignatureInvalid', () =>
      readAll(asB, { token: forged, digest: layerOf(other) }),
    );
  });

  it('refuses malformed tokens: empty, garbage, wrong prefix, empty parts, 64 KiB of junk', async () => {
    for (const token of ['', 'garbage', 'jwt.eyJ9.sig', 'tt1..', 'tt1.a.b.c', `tt1.${'A'.repeat(65_536)}.x`]) {
      await refused('unauthorized', /^Token(Malformed|SignatureInvalid)$/, () =>
        readAll(asB, { token, digest: layerOf(image) }),
      );
    }
  });

  it('refuses DescribePlan with a token for another image', () =>
    refused('unauthorized', 'TokenWrongImage', () =>
      asB.describePlan({ digest: other.target.digest, token: tokenFor(image.target.digest) }),
    ));

  it('refuses a read outside the blob (offset past its end)', () =>
    refused('terminal', 'OffsetOutOfRange', () =>
      readAll(asB, { token: tokenFor(image.target.digest), digest: layerOf(image), offset: 10_000_000 }),
    ));

  // --- path traversal and other non-digests ----------------------------------------------------------------------

  const badDigests = [
    'sha256:../../etc/passwd',
    'sha256:../../../../var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db',
    '../../etc/passwd',
    `sha256:${'a'.repeat(63)}/`,
    `sha256:${'A'.repeat(64)}`,
    `sha512:${'a'.repeat(128)}`,
    `sha256:${'a'.repeat(64)}\n`,
    '',
  ];

  it('refuses every RPC given a digest that is not sha256:<64 hex> (path traversal included)', async () => {
    for (const digest of badDigests) {
      const token = tokenFor(image.target.digest);
      await refused('terminal', 'InvalidDigest', () => readAll(asB, { token, digest }));
      await refused('terminal', 'InvalidDigest', () => asB.describePlan({ digest, token }));
      await refused('terminal', 'InvalidDigest', () => ctl.removeImage({ digest, verifyBlobs: true }));
      await refused('terminal', 'InvalidDigest', () => ctl.pinImage({ digest, until: new Date(Date.UTC(2030, 0, 1)) }));
      await refused('terminal', 'InvalidDigest', () => ctl.listImages([digest]));
      await refused('terminal', 'InvalidDigest', () =>
        ctl.import({ digest, sourceAddress: a.agent.address, sourceNode: 'node-a', token }),
      );
      await refused('terminal', 'InvalidDigest', () =>
        ctl.pushImage({ digest, reference: '127.0.0.1:1/x/y:1', plainHttp: true }),
      );
    }
  });

  it('refuses ListImages by names given a malformed reference, naming it', async () => {
    for (const name of ['Upper:1', 'a//b:1', '../../etc/passwd', 'x:', `x@sha256:${'a'.repeat(63)}`, '']) {
      await refused('terminal', /^Invalid(ImageReference|Digest)$/, () =>
        ctl.findImages(['registry.test/fine:1', name]),
      );
    }
  });

  // --- TLS --------------------------------------------------------------------------------------------------------

  it('refuses a client that presents no certificate, at the TLS handshake', async () => {
    const [host, port] = [a.agent.address.split(':')[0]!, Number(a.agent.address.split(':')[1])];
    const outcome = await new Promise<{ error?: string; data: number }>((resolve) => {
      let data = 0;
      const s = tlsConnect({
        host,
        port,
        ca: cluster.pki.ca,
        ALPNProtocols: ['h2'],
        checkServerIdentity: () => undefined,
      });
      s.on('data', (d: Buffer) => (data += d.length));
      s.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message, data }));
      s.on('close', () => resolve({ data }));
      // HTTP/2 preface: a server that accepted us would answer with its SETTINGS frame.
      s.on('secureConnect', () => s.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'));
    });
    assert.match(outcome.error ?? '', /CERTIFICATE_REQUIRED|ECONNRESET|HANDSHAKE/i, JSON.stringify(outcome));
    assert.equal(outcome.data, 0, 'not one byte of HTTP/2 from the agent');
  });

  it('refuses an agent certificate from another CA, even with a valid token', async () => {
    const stranger = makePki();
    const c = connectAgent({
      address: a.agent.address,
      tls: { ...stranger.issue({ kind: 'agent', node: 'node-b' }), ca: cluster.pki.ca },
      server: { kind: 'agent', node: 'node-a' },
    });
    try {
      await refused('transient', /.*/, () =>
        readAll(c, { token: tokenFor(image.target.digest), digest: layerOf(image) }),
      );
    } finally {
      c.close();
      stranger.cleanup();
    }
  });

  // --- huge and nested documents ----------------------------------------------------------------------------------

  it('refuses to import an image whose manifest is larger than maxDocumentBytes, and still lists the node', async () => {
    const big = buildImage({ repository: 'hostile/huge', tag: '1', layers: [{ size: 10_000 }] });
    const { manifest, blobs } = withHugeManifest(big, maxDocumentBytes + 1024);
    await plant(a.containerd, 'registry.test/hostile/huge:1', manifest, blobs);
    await refused('terminal', 'DocumentTooLarge', () =>
      ctl.import({
        digest: manifest.digest,
        sourceAddress: a.agent.address,
        sourceNode: 'node-a',
        token: tokenFor(manifest.digest),
      }),
    );
    // One hostile image must not blind tote to the rest of the node.
    const listed = await cluster.client(a).listImages();
    assert.ok(
      listed.some((i) => i.digest === image.target.digest && i.complete),
      'the honest image is still listed',
    );
    const huge = listed.find((i) => i.digest === manifest.digest);
    assert.equal(huge?.complete, false, 'the huge one is listed as unusable');
    await cluster.client(a).getNodeInfo();
  });

  it('refuses a source that announces a document larger than maxDocumentBytes (lying plan)', async () => {
    const real = asB;
    const lying: BlobPeer = {
      describePlan: async (args, o) => {
        const plan = await real.describePlan(args, o);
        return {
          ...plan,
          blobs: plan.blobs.map((b) => (b.digest === args.digest ? { ...b, size: maxDocumentBytes + 1 } : b)),
        };
      },
      readBlob: (args, o) => real.readBlob(args, o),
    };
    await refused('integrity', 'DocumentTooLarge', () =>
      runImport(
        { containerd: b.containerd, source: lying, metrics: createAgentMetrics(new Registry()), leaseTtlMs: 60_000 },
        {
          digest: image.target.digest,
          token: tokenFor(image.target.digest),
          sourceNode: 'node-a',
          names: [name],
          platform: hostPlatform(),
          maxBytes: 1 << 30,
          parallelism: 2,
          bandwidthBytesPerSecond: 0,
          pin: false,
        },
        () => undefined,
        new AbortController().signal,
      ),
    );
  });

  it('refuses a source whose blob stream ends short of the announced size', async () => {
    const real = asB;
    const short: BlobPeer = {
      describePlan: (args, o) => real.describePlan(args, o),
      readBlob: (args, o) => ({
        async *[Symbol.asyncIterator]() {
          for await (const chunk of real.readBlob(args, o)) {
            yield args.digest === layerOf(image) ? chunk.subarray(0, chunk.length - 1) : chunk;
            if (args.digest === layerOf(image)) return;
          }
        },
      }),
    };
    await refused('integrity', /BlobShorterThanAnnounced|BlobDigestMismatch/, () =>
      runImport(
        { containerd: b.containerd, source: short, metrics: createAgentMetrics(new Registry()), leaseTtlMs: 60_000 },
        {
          digest: image.target.digest,
          token: tokenFor(image.target.digest),
          sourceNode: 'node-a',
          names: [name],
          platform: hostPlatform(),
          maxBytes: 1 << 30,
          parallelism: 1,
          bandwidthBytesPerSecond: 0,
          pin: false,
        },
        () => undefined,
        new AbortController().signal,
      ),
    );
  });

  it('refuses an index nested in an index (no runnable manifest for the node)', async () => {
    const inner = buildImage({
      repository: 'hostile/nested',
      tag: '1',
      layers: [{ size: 5_000 }],
      platforms: [hostPlatform(), { os: 'linux', architecture: 'arm64' }],
    });
    const p = inner.platforms[0]!;
    let root = inner.index!;
    for (let depth = 0; depth < 3; depth++) {
      root = blobOf(
        MediaTypes.ociIndex,
        json({
          schemaVersion: 2,
          mediaType: MediaTypes.ociIndex,
          manifests: [{ mediaType: root.mediaType, digest: root.digest, size: root.size, platform: hostPlatform() }],
        }),
      );
      if (depth === 0)
        await plant(a.containerd, 'registry.test/hostile/nested-inner:1', inner.index!, [
          p.manifest,
          p.config,
          ...p.layers,
          ...inner.platforms.slice(1).flatMap((q) => [q.manifest, q.config, ...q.layers]),
        ]);
    }
    await plant(a.containerd, 'registry.test/hostile/nested:1', root, []);
    await refused('not-found', 'NoManifestForPlatform', () =>
      ctl.import({
        digest: root.digest,
        sourceAddress: a.agent.address,
        sourceNode: 'node-a',
        token: tokenFor(root.digest),
      }),
    );
  });

  it('survives a manifest of deeply nested JSON (100,000 levels): a clear refusal, the agent still serves', async () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    const p = buildImage({ repository: 'hostile/deep', tag: '1', layers: [{ size: 4_000 }] }).platforms[0]!;
    const doc = p.manifest.data.toString('utf8').replace(/}$/, `,"annotations":{"x":"y"},"deep":${deep}}`);
    const manifest = blobOf(p.manifest.mediaType, Buffer.from(doc));
    await plant(a.containerd, 'registry.test/hostile/deep:1', manifest, [p.config, ...p.layers]);
    const outcome = await ctl
      .import({
        digest: manifest.digest,
        sourceAddress: a.agent.address,
        sourceNode: 'node-a',
        token: tokenFor(manifest.digest),
      })
      .then(
        () => 'imported',
        (err: unknown) => (isToteError(err) ? `${err.kind}/${err.reason}` : `untyped ${String(err)}`),
      );
    assert.ok(!outcome.startsWith('untyped'), outcome);
    assert.ok((await cluster.client(a).getNodeInfo()).nodeName === 'node-a', 'node-a still answers');
    assert.ok((await ctl.getNodeInfo()).nodeName === 'node-b', 'node-b still answers');
  });
});
