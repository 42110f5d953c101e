// The direct data path's fallbacks, against real containerd: an agent given a directory that is not its containerd's
// content store (a wrong mount, another root) must still import correctly through the content API, and a source whose
// directory lacks a blob file must serve it through the API.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { RenewableTls } from '../../../src/agentapi/index.ts';
import { startAgentServer } from '../../../src/agent/index.ts';
import { containerdV2Binary } from '../../support/containerd-daemon.ts';
import { hostPlatform, seedImage, sha256 } from '../../support/containerd-images.ts';
import { buildImage } from '../../support/images.ts';
import type { TestImage } from '../../support/images.ts';
import { tempDir } from '../../support/temp-dirs.ts';
import { makeCluster } from './harness.ts';
import type { Cluster, TestNode } from './harness.ts';

const run = promisify(execFile);

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

  async function importFromA(image: TestImage, name: string, target: TestNode = b) {
    return cluster.client(target).import({
      digest: image.target.digest,
      sourceAddress: a.agent.address,
      sourceNode: a.name,
      token: cluster.token({ digest: image.target.digest, source: a.name, target: target.name }),
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

  it('falls back to the content API when the disk refuses the direct path (blobs/ on another filesystem), said once', async (t) => {
    const reasons: string[] = [];
    const c = await cluster.startNode('node-c', { onContentDirDisabled: (reason) => reasons.push(reason) });
    // Staging files on a tmpfs of their own: placing one into blobs/ is a rename across filesystems (EXDEV), as on a
    // node whose blobs/ directory is another mount.
    const staging = join(c.daemon.root, 'io.containerd.content.v1.content', 'tote-staging');
    mkdirSync(staging, { recursive: true });
    await run('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tote-staging-test', staging]);
    t.after(() => run('umount', [staging]).then(() => undefined));
    for (const [n, size] of [
      [1, 700_000],
      [2, 300_000],
    ] as const) {
      const image = buildImage({ repository: `exdev/${n}`, tag: '1', layers: [{ size }] });
      await seedImage(a.containerd, image, { name: `registry.test/exdev/${n}:1` });
      const done = await importFromA(image, `registry.test/exdev/${n}:1`, c);
      assert.ok(done.imageNames.includes(`registry.test/exdev/${n}:1`));
      for (const blob of image.platforms[0]!.layers) {
        const parts: Uint8Array[] = [];
        for await (const part of c.containerd.content.read(blob.digest)) parts.push(part);
        assert.equal(sha256(Buffer.concat(parts)), blob.digest, `${blob.digest} is in node-c's containerd`);
      }
    }
    assert.equal(reasons.length, 1, reasons.join('\n'));
    assert.match(reasons[0] ?? '', /^EXDEV /);
    const errors = await c.registry.getSingleMetric('tote_agent_errors_total')?.get();
    const direct = errors?.values.filter((v) => v.labels.operation === 'direct_write').reduce((a, v) => a + v.value, 0);
    assert.equal(direct, 1, 'counted once');
    assert.deepEqual(readdirSync(staging), [], 'no staging file left behind');
  });

  it('sweeps the staging files of transfers nobody resumed while it runs, not only when it starts', async () => {
    const d = await cluster.startNode('node-d', { leaseTtlMs: 60_000, stagingSweepMs: 50 });
    const staging = join(d.daemon.root, 'io.containerd.content.v1.content', 'tote-staging');
    mkdirSync(staging, { recursive: true });
    const abandoned = join(staging, `${'ab'.repeat(32)}.0123456789abcdef`);
    const resumable = join(staging, `${'cd'.repeat(32)}.0123456789abcdef`);
    writeFileSync(abandoned, 'left by a transfer the controller gave up on');
    writeFileSync(resumable, 'a transfer that may still resume');
    const hourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(abandoned, hourAgo, hourAgo);
    const deadline = Date.now() + 10_000;
    while (existsSync(abandoned) && Date.now() < deadline) await sleep(50);
    assert.ok(!existsSync(abandoned), 'the abandoned staging file is gone');
    assert.ok(existsSync(resumable), 'a recent one stays for its transfer to resume');
  });
});

describe('agent: blob files placed but never adopted (containerd 1.6 and 2.x)', () => {
  for (const [version, binary] of [
    ['1.6', undefined],
    ['2.x', containerdV2Binary()],
  ] as const) {
    it(`containerd ${version}: a restarted agent has containerd sweep them; blobs in use and in other namespaces stay`, async () => {
      const cluster = makeCluster();
      try {
        const node = await cluster.startNode(`unadopted-${version}`, binary ? { binary } : {});
        const image = buildImage({ repository: 'sweep/kept', tag: '1', layers: [{ size: 30_000 }] });
        await seedImage(node.containerd, image, { name: 'registry.test/sweep/kept:1' });
        const moby = await ctrInNamespace(node, 'moby');
        const blobs = join(node.daemon.root, 'io.containerd.content.v1.content', 'blobs', 'sha256');
        // As the agent leaves a blob when it dies between placing the file and containerd's commit.
        const orphan = Buffer.from(`placed by an import that died before the commit ${version}`);
        const orphanPath = join(blobs, sha256(orphan).slice('sha256:'.length));
        writeFileSync(orphanPath, orphan, { mode: 0o444 });
        await node.agent.stop();

        const restarted = await startAgentServer({
          nodeName: node.name,
          containerd: node.containerd,
          tls: new RenewableTls(cluster.pki.issue({ kind: 'agent', node: node.name }, node.name)),
          tokenPublicKey: cluster.keys.publicKeyPem,
          listen: '127.0.0.1:0',
          registry: new Registry(),
          contentDir: join(node.daemon.root, 'io.containerd.content.v1.content'),
        });
        await restarted.stop();
        assert.ok(!existsSync(orphanPath), 'the unadopted blob file is gone');
        const p = image.platforms[0];
        assert.ok(p);
        for (const blob of [p.manifest, p.config, ...p.layers])
          assert.ok(existsSync(join(blobs, blob.digest.slice('sha256:'.length))), `${blob.digest} of an image stays`);
        assert.ok(existsSync(join(blobs, moby.slice('sha256:'.length))), 'a blob of another namespace stays');
      } finally {
        await cluster.stop();
      }
    });
  }
});

/** Commits a small blob into another namespace with `ctr content ingest` and labels it as a GC root; its digest. */
async function ctrInNamespace(node: TestNode, namespace: string): Promise<string> {
  const bytes = Buffer.from(`kept by another namespace ${node.name}`);
  const digest = sha256(bytes);
  const ctr = (args: string[], input?: Buffer) =>
    new Promise<void>((resolve, reject) => {
      const child = execFile(
        node.daemon.ctr,
        ['--address', node.daemon.socket, '--namespace', namespace, ...args],
        (err) => (err ? reject(err) : resolve()),
      );
      if (input) child.stdin?.end(input);
    });
  await ctr(
    ['content', 'ingest', '--expected-digest', digest, '--expected-size', String(bytes.length), `ingest-${node.name}`],
    bytes,
  );
  await ctr(['content', 'label', digest, 'containerd.io/gc.root=kept']);
  return digest;
}
