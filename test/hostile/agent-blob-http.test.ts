// Hostile input at the agent's HTTP blob endpoint (GET /v1/blobs/<digest> on the mTLS port, ALPN http/1.1), against
// real containerd daemons and real agent servers (the harness of test/integration/agent). The same authorisation as
// gRPC ReadBlob (test/hostile/agent.test.ts), reached through another parser: each case must be refused with a typed,
// explained error and leave both nodes' containerd and content stores exactly as they were.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { isToteError } from '../../src/api/errors.ts';
import {
  generateTransferKeys,
  HttpsBlobReader,
  kindHeader,
  reasonHeader,
  tlsClientOptions,
} from '../../src/agentapi/index.ts';
import type { TlsMaterial } from '../../src/agentapi/index.ts';
import { seedImage, sha256 } from '../support/containerd-images.ts';
import { buildImage } from '../support/images.ts';
import type { TestImage } from '../support/images.ts';
import { makeCluster, snapshot } from '../integration/agent/harness.ts';
import type { Cluster, TestNode } from '../integration/agent/harness.ts';

describe('hostile input at the agent blob endpoint (HTTP/1.1)', () => {
  let cluster: Cluster;
  let a: TestNode;
  let b: TestNode;
  let bTls: TlsMaterial;
  let asB: HttpsBlobReader;
  let image: TestImage;
  let other: TestImage;

  before(async () => {
    cluster = makeCluster();
    a = await cluster.startNode('node-a');
    b = await cluster.startNode('node-b');
    bTls = cluster.pki.issue({ kind: 'agent', node: 'node-b' });
    asB = new HttpsBlobReader(a.agent.address, bTls, { kind: 'agent', node: 'node-a' });
    image = buildImage({ repository: 'hostile/http', tag: '1', layers: [{ size: 700_000 }] });
    other = buildImage({ repository: 'hostile/http-other', tag: '1', layers: [{ size: 200_000 }] });
    await seedImage(a.containerd, image, { name: 'registry.test/hostile/http:1' });
    await seedImage(a.containerd, other, { name: 'registry.test/hostile/http-other:1' });
  });
  after(async () => {
    asB?.close();
    await cluster?.stop();
  });

  const layerOf = (img: TestImage) => img.platforms[0]!.layers[0]!;
  const tokenFor = (digest: string, extra: Partial<Parameters<Cluster['token']>[0]> = {}) =>
    cluster.token({ digest, source: 'node-a', target: 'node-b', ...extra });

  async function readAll(reader: HttpsBlobReader, args: { token: string; digest: string; offset?: number }) {
    const parts: Uint8Array[] = [];
    for await (const chunk of reader.read(args)) parts.push(chunk);
    return Buffer.concat(parts);
  }

  async function refused(kind: string, reason: string, run: () => Promise<unknown>) {
    const state = async () => [await snapshot(a.containerd, a.daemon), await snapshot(b.containerd, b.daemon)];
    const before = await state();
    await assert.rejects(run(), (err: unknown) => {
      assert.ok(isToteError(err), String(err));
      assert.equal(err.kind, kind, `${err.reason}: ${err.message}`);
      assert.equal(err.reason, reason, err.message);
      assert.ok(err.message.length > 10, 'the error explains itself');
      return true;
    });
    assert.deepEqual(await state(), before, 'containerd and content stores as before');
  }

  /** A raw request with node-b's certificate: status, tote error headers and body. */
  function raw(path: string, headers: Record<string, string>, method = 'GET', tls: TlsMaterial = bTls) {
    const [host, port] = [a.agent.address.split(':')[0]!, Number(a.agent.address.split(':')[1])];
    return new Promise<{ status: number; kind?: string; reason?: string; body: Buffer }>((resolve, reject) => {
      const req = request(
        { host, port, path, method, headers, ...tlsClientOptions(tls, { kind: 'agent', node: 'node-a' }) },
        (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              kind: res.headers[kindHeader] as string | undefined,
              reason: res.headers[reasonHeader] as string | undefined,
              body: Buffer.concat(parts),
            }),
          );
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  it('sanity: the honest read (upgrade), a resumed read from an offset, and a plain GET return the blob', async () => {
    const layer = layerOf(image);
    const token = tokenFor(image.target.digest);
    const whole = await readAll(asB, { token, digest: layer.digest });
    assert.equal(sha256(whole), layer.digest);
    const tail = await readAll(asB, { token, digest: layer.digest, offset: 123_456 });
    assert.deepEqual(tail, whole.subarray(123_456));
    const plain = await raw(`/v1/blobs/${layer.digest}`, { authorization: `Bearer ${token}` });
    assert.equal(plain.status, 200);
    assert.equal(sha256(plain.body), layer.digest);
  });

  it('refuses a valid token replayed for a blob of another image', () =>
    refused('unauthorized', 'BlobNotInImage', () =>
      readAll(asB, { token: tokenFor(image.target.digest), digest: layerOf(other).digest }),
    ));

  /** A blob read of `image`'s first layer with node-a's valid token, by a client presenting `tls`. */
  async function readWithCertificate(tls: TlsMaterial): Promise<void> {
    const reader = new HttpsBlobReader(a.agent.address, tls, { kind: 'agent', node: 'node-a' });
    try {
      await readAll(reader, { token: tokenFor(image.target.digest), digest: layerOf(image).digest });
    } finally {
      reader.close();
    }
  }

  it('refuses a valid token replayed by another node (the certificate is not the token’s target)', () =>
    refused('unauthorized', 'TokenWrongTarget', () =>
      readWithCertificate(cluster.pki.issue({ kind: 'agent', node: 'node-c' })),
    ));

  it('refuses the controller’s certificate: blob reads are for agents', () =>
    refused('unauthorized', 'NotAnAgent', () => readWithCertificate(cluster.controllerTls)));

  it('refuses an expired token, a token signed by another key, garbage and no token at all', async () => {
    const digest = layerOf(image).digest;
    const expired = tokenFor(image.target.digest, { issuedAt: new Date(Date.now() - 600_000), ttlMs: 60_000 });
    await refused('unauthorized', 'TokenExpired', () => readAll(asB, { token: expired, digest }));
    const foreign = tokenFor(image.target.digest, { key: generateTransferKeys().privateKeyPem });
    await refused('unauthorized', 'TokenSignatureInvalid', () => readAll(asB, { token: foreign, digest }));
    for (const token of ['', 'garbage', 'tote1..', 'x'.repeat(8_000)]) {
      const res = await raw(`/v1/blobs/${digest}`, token ? { authorization: `Bearer ${token}` } : {});
      assert.equal(res.status, 403, `token ${token.slice(0, 20)}: ${res.body.toString()}`);
      assert.equal(res.kind, 'unauthorized');
    }
    // Past Node's 16 KiB header limit the HTTP parser refuses (431, or the connection closed under the client)
    // before any handler runs; the agent still serves.
    const huge = await raw(`/v1/blobs/${digest}`, { authorization: `Bearer ${'x'.repeat(65_536)}` }).then(
      (res) => String(res.status),
      (err: NodeJS.ErrnoException) => err.code ?? String(err),
    );
    assert.ok(['431', 'ECONNRESET', 'EPIPE'].includes(huge), huge);
    assert.equal(sha256(await readAll(asB, { token: tokenFor(image.target.digest), digest })), digest);
  });

  it('refuses digests that are not sha256:<64 hex> (path traversal included), bad ranges and other requests', async () => {
    const token = tokenFor(image.target.digest);
    for (const path of [
      '/v1/blobs/sha256:..%2F..%2Fetc%2Fpasswd',
      `/v1/blobs/sha256%3A${'a'.repeat(64)}`,
      '/v1/blobs/%E0%A4%A',
      '/v1/blobs/sha256:../../etc/passwd',
      '/v1/blobs/..%2F..%2F..%2Fvar%2Flib%2Fcontainerd%2Fio.containerd.metadata.v1.bolt%2Fmeta.db',
      `/v1/blobs/sha256:${'A'.repeat(64)}`,
      `/v1/blobs/sha512:${'a'.repeat(128)}`,
      `/v1/blobs/sha256:${'a'.repeat(64)}%0A`,
      '/v1/blobs/',
    ]) {
      const res = await raw(path, { authorization: `Bearer ${token}` });
      assert.equal(res.status, 400, `${path}: ${res.status} ${res.body.toString()}`);
      assert.equal(res.reason, 'InvalidDigest', path);
    }
    const digest = layerOf(image).digest;
    for (const range of ['bytes=5-10', 'bytes=-5', 'items=0-', 'bytes=abc-', `bytes=${'9'.repeat(30)}-`]) {
      const res = await raw(`/v1/blobs/${digest}`, { authorization: `Bearer ${token}`, range });
      assert.equal(res.status, 400, range);
      assert.equal(res.reason, 'InvalidRange', range);
    }
    await refused('terminal', 'OffsetOutOfRange', () => readAll(asB, { token, digest, offset: 10_000_000 }));
    for (const [method, path] of [
      ['POST', `/v1/blobs/${digest}`],
      ['GET', '/metrics'],
      ['GET', '/'],
    ] as const) {
      const res = await raw(path, { authorization: `Bearer ${token}` }, method);
      assert.equal(res.status, 404, `${method} ${path}`);
      assert.equal(res.reason, 'NoSuchEndpoint');
    }
  });

  it('refuses a client that presents no certificate, at the TLS handshake', async () => {
    const [host, port] = [a.agent.address.split(':')[0]!, Number(a.agent.address.split(':')[1])];
    const outcome = await new Promise<string>((resolve) => {
      const socket = tlsConnect({
        host,
        port,
        ca: cluster.pki.ca,
        ALPNProtocols: ['http/1.1'],
        checkServerIdentity: () => undefined,
      });
      socket.on('secureConnect', () => {
        socket.write(`GET /v1/blobs/${layerOf(image).digest} HTTP/1.1\r\nHost: x\r\n\r\n`);
      });
      socket.on('data', () => resolve('answered'));
      socket.on('error', (err) => resolve(`refused: ${err.message}`));
      socket.on('close', () => resolve('refused: closed'));
    });
    assert.match(outcome, /^refused/);
  });
});
