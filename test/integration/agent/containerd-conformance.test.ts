// Conformance suite for the containerd adapter (src/containerd): every behaviour the agent relies on, asserted against
// real daemons — Debian's containerd 1.6 and, when hack/containerd/build.sh has built it, containerd 2.x.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isToteError } from '../../../src/api/errors.ts';
import { connectContainerd, gcExpireLabel, gcRefConfigLabel, gcRefLayerLabel } from '../../../src/containerd/index.ts';
import type { Containerd } from '../../../src/containerd/index.ts';
import { containerdV2Binary, startContainerd } from '../../support/containerd-daemon.ts';
import type { ContainerdDaemon } from '../../support/containerd-daemon.ts';
import { sha256 } from '../../support/containerd-images.ts';
import { seededBytes as randomBytesFrom } from '../../support/images.ts';

const blobOf = (bytes: Buffer, mediaType: string) => ({ digest: sha256(bytes), size: bytes.length, mediaType });

const generations: { name: string; binary?: string }[] = [
  { name: 'containerd 1.6 (Debian)', binary: '/usr/bin/containerd' },
];
const v2 = containerdV2Binary();
if (v2 !== undefined) generations.push({ name: 'containerd 2.x (built)', binary: v2 });
else console.warn('containerd 2.x not built (run hack/containerd/build.sh): conformance runs against 1.6 only');

const chunk = 1 << 20;

// Content held by no lease and no image is garbage from containerd's point of view: the suite writes under this lease.
const suiteLease = 'conf-suite';

async function writeBlob(c: Containerd, bytes: Buffer, opts: { lease?: string; labels?: Record<string, string> } = {}) {
  const digest = sha256(bytes);
  const lease = opts.lease ?? suiteLease;
  const w = await c.content.openWriter(`conf-${digest}`, { total: bytes.length, expected: digest, lease });
  for (let off = w.offset; off < bytes.length; off += chunk) await w.write(bytes.subarray(off, off + chunk));
  return { digest, result: await w.commit(opts.labels) };
}

async function rejects(promise: Promise<unknown>, kind: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isToteError(err), `expected a ToteError, got ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    return true;
  });
}

for (const generation of generations) {
  describe(`containerd adapter conformance: ${generation.name}`, () => {
    let daemon: ContainerdDaemon;
    let c: Containerd;

    before(async () => {
      daemon = await startContainerd({ binary: generation.binary, name: 'conf' });
      c = connectContainerd({ socket: daemon.socket });
      await c.leases.create(suiteLease, new Date(Date.now() + 3_600_000));
    });
    after(async () => {
      c?.close();
      await daemon?.stop();
    });

    it('answers Version and uses the k8s.io namespace', async () => {
      const v = await c.version();
      assert.match(v.version, generation.binary === '/usr/bin/containerd' ? /^1\.6/ : /^v?2\./);
      assert.equal(c.namespace, 'k8s.io');
      await writeBlob(c, Buffer.from('namespace probe'));
      assert.ok((await c.namespaces()).includes('k8s.io'));
    });

    it('writes a multi-chunk blob, stores commit labels, and reads it back from any offset', async () => {
      const bytes = randomBytesFrom('conformance-multichunk', 3 * chunk + 123);
      const { digest, result } = await writeBlob(c, bytes, { labels: { 'tote.test/a': 'b' } });
      assert.equal(result, 'committed');
      const info = await c.content.info(digest);
      assert.equal(info?.size, bytes.length);
      assert.equal(info?.labels['tote.test/a'], 'b');
      const parts: Uint8Array[] = [];
      for await (const p of c.content.read(digest, chunk + 7)) {
        assert.ok(p.length <= chunk, 'containerd reads in ≤ 1 MiB pieces');
        parts.push(p);
      }
      assert.deepEqual(Buffer.concat(parts), bytes.subarray(chunk + 7));
      assert.equal(sha256(await c.content.readAll(digest, bytes.length)), digest);
      await rejects(c.content.readAll(digest, 10), 'terminal');
    });

    it('reports a missing blob as undefined / not-found', async () => {
      const missing = sha256(Buffer.from('never written'));
      assert.equal(await c.content.info(missing), undefined);
      await rejects(c.content.readAll(missing, 100), 'not-found');
      await assert.rejects(
        async () => {
          for await (const _ of c.content.read(missing)) void _;
        },
        (err: unknown) => isToteError(err, 'not-found'),
      );
    });

    it('treats an already committed blob as exists, at open and at commit', async () => {
      const bytes = Buffer.from('exists twice');
      await writeBlob(c, bytes);
      await rejects(
        c.content.openWriter('conf-exists-2', { total: bytes.length, expected: sha256(bytes) }),
        'already-exists',
      );
    });

    it('resumes an interrupted ingest from the offset containerd reports', async () => {
      const bytes = randomBytesFrom('conformance-resume', 2 * chunk + 5);
      const digest = sha256(bytes);
      const ref = 'conf-resume';
      const first = await c.content.openWriter(ref, { total: bytes.length, expected: digest, lease: suiteLease });
      assert.equal(first.offset, 0);
      await first.write(bytes.subarray(0, chunk));
      await first.flush();
      first.close();
      const status = await c.content.ingestStatus(ref);
      assert.equal(status?.offset, chunk);
      assert.equal(status?.total, bytes.length);
      assert.ok((await c.content.listIngests()).some((s) => s.ref === ref));
      const second = await c.content.openWriter(ref, { total: bytes.length, expected: digest, lease: suiteLease });
      assert.equal(second.offset, chunk, 'the ingest survived the broken stream');
      for (let off = second.offset; off < bytes.length; off += chunk)
        await second.write(bytes.subarray(off, off + chunk));
      assert.equal(await second.commit(), 'committed');
      assert.equal((await c.content.info(digest))?.size, bytes.length);
      assert.equal(await c.content.ingestStatus(ref), undefined);
    });

    it('refuses a commit whose bytes do not match the digest (integrity) and keeps the ingest until aborted', async () => {
      const bytes = Buffer.from('the real bytes');
      const wrong = sha256(Buffer.from('other bytes!!!'));
      const ref = 'conf-mismatch';
      const w = await c.content.openWriter(ref, { total: bytes.length, expected: wrong });
      await w.write(bytes);
      await rejects(w.commit(), 'integrity');
      assert.equal(await c.content.info(wrong), undefined);
      assert.equal(await c.content.info(sha256(bytes)), undefined);
      assert.notEqual(await c.content.ingestStatus(ref), undefined);
      await c.content.abortIngest(ref);
      assert.equal(await c.content.ingestStatus(ref), undefined);
      await c.content.abortIngest(ref); // idempotent
    });

    it('refuses to write past the announced size', async () => {
      const bytes = Buffer.from('twelve bytes');
      const w = await c.content.openWriter('conf-too-long', { total: 5, expected: sha256(bytes.subarray(0, 5)) });
      await rejects(w.write(bytes), 'integrity');
      w.close();
      await c.content.abortIngest('conf-too-long');
    });

    it('updates and removes single labels on a blob', async () => {
      const { digest } = await writeBlob(c, Buffer.from('labelled'), { labels: { keep: 'me', drop: 'me' } });
      const info = await c.content.updateLabels(digest, { added: 'yes', drop: '' });
      assert.deepEqual(info.labels, { keep: 'me', added: 'yes' });
      assert.deepEqual((await c.content.info(digest))?.labels, { keep: 'me', added: 'yes' });
      assert.ok((await c.content.list([`labels.added==yes`])).some((i) => i.digest === digest));
    });

    it('creates, gets, lists, updates and deletes image records', async () => {
      const target = blobOf(Buffer.from('{"schemaVersion":2}'), 'application/vnd.oci.image.manifest.v1+json');
      const name = 'registry.test/conformance/app:1';
      const created = await c.images.create({ name, target, labels: { 'io.cri-containerd.image': 'managed' } });
      assert.equal(created.target.digest, target.digest);
      await rejects(c.images.create({ name, target }), 'already-exists');
      assert.equal((await c.images.get(name))?.labels['io.cri-containerd.image'], 'managed');
      assert.equal(await c.images.get('registry.test/none:1'), undefined);
      const listed = await c.images.list([`target.digest==${target.digest}`]);
      assert.deepEqual(
        listed.map((i) => i.name),
        [name],
      );
      await c.images.update({ name, target, labels: { pinned: 'yes' } }, ['labels.pinned']);
      assert.deepEqual((await c.images.get(name))?.labels, { 'io.cri-containerd.image': 'managed', pinned: 'yes' });
      await c.images.delete(name, { sync: true });
      assert.equal(await c.images.get(name), undefined);
      await c.images.delete(name); // idempotent
      await rejects(c.images.create({ name: '', target }), 'terminal');
    });

    it('holds content with a lease that expires by label, and releases it to GC on delete', async () => {
      const lease = 'conf-lease-1';
      const expires = new Date(Date.now() + 3_600_000);
      const created = await c.leases.create(lease, expires, { purpose: 'test' });
      assert.ok(created.labels[gcExpireLabel]);
      assert.equal(
        new Date(created.labels[gcExpireLabel] ?? '').getTime(),
        Math.floor(expires.getTime() / 1000) * 1000,
      );
      await rejects(c.leases.create(lease, expires), 'already-exists');
      const { digest } = await writeBlob(c, Buffer.from('held by a lease only'), { lease });
      assert.deepEqual(await c.leases.listResources(lease), [{ type: 'content', id: digest }]);
      assert.ok((await c.leases.list()).some((l) => l.id === lease));
      await c.leases.delete(lease, { sync: true });
      assert.equal(await c.content.info(digest), undefined, 'GC collected the blob its lease no longer held');
      await c.leases.delete(lease); // idempotent
    });

    it('keeps what gc.ref labels link from an image record, and collects it after the record goes', async () => {
      const lease = 'conf-lease-gc';
      await c.leases.create(lease, new Date(Date.now() + 3_600_000));
      const config = await writeBlob(c, Buffer.from('{"config":true}'), { lease });
      const layer = await writeBlob(c, randomBytesFrom('gc-layer', 1000), { lease });
      const manifestBytes = Buffer.from(`{"config":"${config.digest}","layer":"${layer.digest}"}`);
      const manifest = await writeBlob(c, manifestBytes, {
        lease,
        labels: { [gcRefConfigLabel]: config.digest, [gcRefLayerLabel(0)]: layer.digest },
      });
      const name = 'registry.test/conformance/gc:1';
      await c.images.create({
        name,
        target: { ...blobOf(manifestBytes, 'application/vnd.oci.image.manifest.v1+json') },
      });
      await c.leases.delete(lease, { sync: true });
      for (const d of [config.digest, layer.digest, manifest.digest]) {
        assert.notEqual(await c.content.info(d), undefined, `${d} survives GC through the labels`);
      }
      await c.images.delete(name, { sync: true });
      for (const d of [config.digest, layer.digest, manifest.digest]) {
        assert.equal(await c.content.info(d), undefined, `${d} collected once unreferenced`);
      }
    });

    it('adds an existing blob to a lease', async () => {
      const { digest } = await writeBlob(c, Buffer.from('adopted'));
      await c.leases.create('conf-lease-adopt', new Date(Date.now() + 60_000));
      await c.leases.addResource('conf-lease-adopt', { type: 'content', id: digest });
      assert.deepEqual(await c.leases.listResources('conf-lease-adopt'), [{ type: 'content', id: digest }]);
      await c.leases.delete('conf-lease-adopt');
    });

    it('cancels a read through an AbortSignal with a transient error', async () => {
      const { digest } = await writeBlob(c, randomBytesFrom('cancel-read', 4 * chunk));
      const controller = new AbortController();
      await assert.rejects(
        async () => {
          for await (const _ of c.content.read(digest, 0, { signal: controller.signal })) controller.abort();
        },
        (err: unknown) => isToteError(err, 'transient'),
      );
    });
  });
}

describe('containerd adapter without a daemon', () => {
  it('reports an unreachable socket as transient, within the deadline', async () => {
    const c = connectContainerd({ socket: '/nonexistent/tote-test.sock' });
    try {
      const started = Date.now();
      await rejects(c.version({ timeoutMs: 500 }), 'transient');
      assert.ok(Date.now() - started < 5_000);
    } finally {
      c.close();
    }
  });
});
