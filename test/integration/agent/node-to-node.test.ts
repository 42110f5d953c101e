// Node-to-node transfer against real parts: two (or three) real containerd daemons, a real agent beside each on
// loopback with mTLS certificates made by openssl, the controller's side played by a typed client holding the
// controller certificate and the token-signing key. Asserts the state of each node's containerd, CRI's view and
// containerd's own ability to run the image — not the calls made.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isToteError } from '../../../src/api/errors.ts';
import { connectAgent, ImportPhase } from '../../../src/agentapi/index.ts';
import type { AgentClient } from '../../../src/agentapi/index.ts';
import { runImport } from '../../../src/agent/index.ts';
import type { BlobPeer } from '../../../src/agent/index.ts';
import { createAgentMetrics } from '../../../src/agent/metrics.ts';
import { Registry } from 'prom-client';
import { CriClient } from '../../support/node-simulator/cri.ts';
import { hostPlatform, seedImage, sha256, trueLayer } from '../../support/containerd-images.ts';
import { containerdV2Binary } from '../../support/containerd-daemon.ts';
import { buildImage, buildLayer } from '../../support/images.ts';
import type { TestImage } from '../../support/images.ts';
import { counter, cuttingRelay, makeCluster, snapshot } from './harness.ts';
import type { Cluster, TestNode } from './harness.ts';

const chunk = 1 << 20;

// Both containerd API generations, with the content store mounted (the DaemonSet's default: blobs read from and placed
// as files), and 1.6 once more through the content API (a store that is not mounted).
const generations: { name: string; binary: string; contentApi: boolean }[] = [
  { name: 'containerd 1.6', binary: '/usr/bin/containerd', contentApi: false },
  { name: 'containerd 1.6, content API', binary: '/usr/bin/containerd', contentApi: true },
];
const v2 = containerdV2Binary();
if (v2 !== undefined) generations.push({ name: 'containerd 2.x', binary: v2, contentApi: false });

for (const generation of generations)
  describe(`agent: node-to-node transfer (${generation.name}, CRI on the target)`, () => {
    let cluster: Cluster;
    let a: TestNode;
    let b: TestNode;
    let ctl: AgentClient;

    before(async () => {
      cluster = makeCluster();
      a = await cluster.startNode('node-a', { binary: generation.binary, contentApi: generation.contentApi });
      b = await cluster.startNode('node-b', {
        binary: generation.binary,
        cri: true,
        contentApi: generation.contentApi,
      });
      ctl = cluster.client(b);
    });
    after(async () => {
      await cluster?.stop();
    });

    const importTo = (image: TestImage, name: string, extra: Partial<Parameters<AgentClient['import']>[0]> = {}) =>
      ctl.import({
        digest: image.target.digest,
        sourceAddress: a.agent.address,
        sourceNode: a.name,
        token: cluster.token({ digest: image.target.digest, source: a.name, target: b.name }),
        names: [name],
        ...extra,
      });

    async function assertComplete(node: TestNode, image: TestImage, name: string) {
      const platformImage =
        image.platforms.find((p) => p.platform.architecture === hostPlatform().architecture) ?? image.platforms[0];
      assert.ok(platformImage);
      for (const blob of [image.index, platformImage.manifest, platformImage.config, ...platformImage.layers]) {
        if (blob === undefined) continue;
        const info = await node.containerd.content.info(blob.digest);
        assert.equal(info?.size, blob.size, `${blob.digest} present on ${node.name} with its size`);
        assert.equal(
          sha256(await readAllOf(node, blob.digest)),
          blob.digest,
          `${blob.digest} bytes hash to their digest`,
        );
      }
      const repo = name.replace(/:[^:/]+$/, '');
      for (const record of [name, `${repo}@${image.target.digest}`, platformImage.config.digest]) {
        const r = await node.containerd.images.get(record);
        assert.equal(r?.target.digest, image.target.digest, `record ${record} points at the source's digest`);
        assert.equal(r?.labels['io.cri-containerd.image'], 'managed');
      }
      const [listed] = await cluster.client(node).listImages([image.target.digest]);
      assert.equal(listed?.complete, true, `agent reports ${name} complete: missing ${listed?.missingDigests}`);
      // By name (how the controller resolves tags): the image its record names, and nothing for a tag never pulled.
      const found = await cluster.client(node).findImages([name, `${repo}:never-pulled`]);
      assert.deepEqual(
        found.map((i) => i.digest),
        [image.target.digest],
      );
      assert.ok(found[0]?.names.includes(name), `${name} among ${found[0]?.names}`);
      assert.deepEqual(await cluster.client(node).findImages([`${repo}:never-pulled`]), []);
    }

    async function readAllOf(node: TestNode, digest: string): Promise<Buffer> {
      const parts: Uint8Array[] = [];
      for await (const p of node.containerd.content.read(digest)) parts.push(p);
      return Buffer.concat(parts);
    }

    /** Deleting a lease synchronously runs containerd's garbage collection to completion. */
    async function forceGc(node: TestNode) {
      await node.containerd.leases.create('force-gc', new Date(Date.now() + 60_000));
      await node.containerd.leases.delete('force-gc', { sync: true });
    }

    it('moves a multi-layer image: equal digests, CRI sees it by tag and digest, survives GC, and runs', async () => {
      const image = buildImage({
        repository: 'salvage/app',
        tag: '1',
        base: [trueLayer()],
        layers: [{ size: 300_000 }, { size: 2_500_000 }, { size: 1_200_000 }],
      });
      const name = 'registry.test/salvage/app:1';
      await seedImage(a.containerd, image, { name });

      const progress: number[] = [];
      const done = await ctl.import(
        {
          digest: image.target.digest,
          sourceAddress: a.agent.address,
          sourceNode: a.name,
          token: cluster.token({ digest: image.target.digest, source: a.name, target: b.name }),
          names: [name],
        },
        { onProgress: (p) => progress.push(p.phase) },
      );
      assert.equal(done.phase, ImportPhase.IMPORT_PHASE_COMPLETED);
      const total = [...image.blobs.values()].reduce((s, x) => s + x.size, 0);
      assert.equal(done.bytesTotal, total);
      assert.equal(done.bytesTransferred, total);
      assert.equal(done.bytesSkipped, 0);
      assert.ok(progress.includes(ImportPhase.IMPORT_PHASE_TRANSFERRING), 'progress was reported while transferring');
      assert.equal(await counter(b.registry, 'tote_agent_bytes_received_total'), total);
      assert.ok((await counter(a.registry, 'tote_agent_bytes_sent_total')) >= total);

      await assertComplete(b, image, name);
      const manifest = await b.containerd.content.info(image.platforms[0]!.manifest.digest);
      assert.equal(manifest?.labels['containerd.io/gc.ref.content.config'], image.platforms[0]!.config.digest);
      assert.equal(manifest?.labels['containerd.io/gc.ref.content.l.3'], image.platforms[0]!.layers[3]!.digest);
      assert.deepEqual(
        (await b.containerd.leases.list()).map((l) => l.id).filter((id) => id.startsWith('tote-')),
        [],
        'lease released',
      );

      const cri = new CriClient(b.daemon.socket);
      for (const ref of [name, `registry.test/salvage/app@${image.target.digest}`]) {
        const status = await cri.imageStatus(ref);
        assert.equal(status?.id, image.platforms[0]!.config.digest, `CRI ImageStatus(${ref})`);
        assert.ok(status?.repoTags.includes(name));
        assert.ok(status?.repoDigests.includes(`registry.test/salvage/app@${image.target.digest}`));
      }

      await forceGc(b);
      await assertComplete(b, image, name);

      if (process.arch === 'x64') {
        // containerd unpacks the transferred layers and runc starts the container: the image is really usable.
        const out = execFileSync(
          b.daemon.ctr,
          ['-a', b.daemon.socket, '-n', 'k8s.io', 'run', '--rm', name, 'tote-run-1', '/true'],
          {
            encoding: 'utf8',
            timeout: 60_000,
          },
        );
        assert.equal(out, '');
      }
    });

    it('moves only the missing blobs when the base layers are already on the target', async () => {
      const base = [
        buildLayer({ size: 1_500_000, seed: 'shared-base-1' }),
        buildLayer({ size: 700_000, seed: 'shared-base-2' }),
      ];
      const onTarget = buildImage({ repository: 'salvage/base', tag: '1', base, layers: [{ size: 10_000 }] });
      const wanted = buildImage({
        repository: 'salvage/child',
        tag: '1',
        base,
        layers: [{ size: 900_000 }, { size: 50_000 }],
      });
      await seedImage(b.containerd, onTarget, { name: 'registry.test/salvage/base:1' });
      await seedImage(a.containerd, wanted, { name: 'registry.test/salvage/child:1' });
      const receivedBefore = await counter(b.registry, 'tote_agent_bytes_received_total');

      const done = await importTo(wanted, 'registry.test/salvage/child:1');
      const baseBytes = base.reduce((s, l) => s + l.size, 0);
      const missingBytes = [...wanted.blobs.values()].reduce((s, x) => s + x.size, 0) - baseBytes;
      assert.equal(done.bytesTransferred, missingBytes);
      assert.equal(done.bytesSkipped, baseBytes);
      assert.equal(done.blobsPresent, 2);
      assert.equal((await counter(b.registry, 'tote_agent_bytes_received_total')) - receivedBefore, missingBytes);
      await assertComplete(b, wanted, 'registry.test/salvage/child:1');

      // A second import of a complete image moves nothing.
      const again = await importTo(wanted, 'registry.test/salvage/child:1');
      assert.equal(again.bytesTransferred, 0);
    });

    /** What an interrupted import kept on the target: partial ingests, or staging files when the store is mounted. */
    async function partialBlobs(node: TestNode): Promise<number[]> {
      if (generation.contentApi) {
        const ingests = await node.containerd.content.listIngests();
        return ingests.filter((s) => s.ref.startsWith('tote-import-')).map((s) => s.offset);
      }
      const staging = join(node.daemon.root, 'io.containerd.content.v1.content', 'tote-staging');
      return existsSync(staging) ? readdirSync(staging).map((f) => statSync(join(staging, f)).size) : [];
    }

    it('resumes an interrupted transfer from what it kept, re-sending less than a chunk per interrupted blob', async () => {
      const image = buildImage({
        repository: 'salvage/big',
        tag: '1',
        layers: [{ size: 12 * chunk }, { size: 200_000 }],
      });
      const name = 'registry.test/salvage/big:1';
      await seedImage(a.containerd, image, { name });
      const relay = await cuttingRelay(a.agent.address, 5 * chunk);
      const receivedBefore = await counter(b.registry, 'tote_agent_bytes_received_total');
      try {
        await assert.rejects(importTo(image, name, { sourceAddress: relay.address, parallelism: 1 }), (err: unknown) =>
          isToteError(err, 'transient'),
        );
      } finally {
        await relay.close();
      }
      assert.ok(relay.cuts >= 1, 'the relay cut the stream');
      const firstAttempt = (await counter(b.registry, 'tote_agent_bytes_received_total')) - receivedBefore;
      const partial = await partialBlobs(b);
      const kept = partial.reduce((s, n) => s + n, 0);
      assert.ok(kept > 0, 'the partial blob stayed on the target');
      const interrupted = partial.filter((n) => n > 0).length;

      const done = await importTo(image, name);
      const total = [...image.blobs.values()].reduce((s, x) => s + x.size, 0);
      assert.equal(done.bytesResumed, kept, 'the retry started where the first attempt stopped');
      const resent = firstAttempt + done.bytesTransferred + done.bytesSkipped - total;
      assert.ok(
        resent >= 0 && resent < chunk * Math.max(1, interrupted),
        `re-sent ${resent} bytes for ${interrupted} interrupted blob(s)`,
      );
      await assertComplete(b, image, name);
      assert.deepEqual(
        (await b.containerd.content.listIngests()).filter((s) => s.ref.startsWith('tote-import-')),
        [],
      );
      assert.deepEqual(await partialBlobs(b), [], 'nothing partial is left');
    });

    it('moves only the node platform of a multi-platform index the source holds partly', async () => {
      const image = buildImage({
        repository: 'salvage/multi',
        tag: '1',
        layers: [{ size: 400_000 }, { size: 100_000 }],
        platforms: [
          hostPlatform(),
          { os: 'linux', architecture: hostPlatform().architecture === 'arm64' ? 'amd64' : 'arm64' },
        ],
      });
      const name = 'registry.test/salvage/multi:1';
      await seedImage(a.containerd, image, { name, platforms: [hostPlatform()] });
      const done = await importTo(image, name);
      assert.equal(done.phase, ImportPhase.IMPORT_PHASE_COMPLETED);
      await assertComplete(b, image, name);
      const other = image.platforms[1]!;
      for (const blob of [other.manifest, other.config, ...other.layers]) {
        assert.equal(await b.containerd.content.info(blob.digest), undefined, 'the other platform did not move');
      }
      const index = await b.containerd.content.info(image.index!.digest);
      assert.equal(index?.labels['containerd.io/gc.ref.content.m.0'], image.platforms[0]!.manifest.digest);
      const status = await new CriClient(b.daemon.socket).imageStatus(name);
      assert.equal(status?.id, image.platforms[0]!.config.digest);
      await forceGc(b);
      await assertComplete(b, image, name);
    });

    describe('refusals leave the target clean', () => {
      let image: TestImage;
      const name = 'registry.test/salvage/refused:1';
      before(async () => {
        image = buildImage({
          repository: 'salvage/refused',
          tag: '1',
          layers: [{ size: 600_000 }, { size: 2_100_000 }],
        });
        await seedImage(a.containerd, image, { name });
      });

      async function refused(kind: string, reason: string, run: () => Promise<unknown>) {
        const before = await snapshot(b.containerd, b.daemon);
        await assert.rejects(run(), (err: unknown) => {
          assert.ok(isToteError(err), String(err));
          assert.equal(err.kind, kind, err.message);
          assert.equal(err.reason, reason, err.message);
          return true;
        });
        assert.deepEqual(await snapshot(b.containerd, b.daemon), before, 'containerd on the target is as before');
      }

      it('refuses a token signed by another key', () =>
        refused('unauthorized', 'TokenSignatureInvalid', () =>
          importTo(image, name, {
            token: cluster.token({ digest: image.target.digest, source: a.name, target: b.name, key: makeOtherKey() }),
          }),
        ));

      it('refuses an expired token', () =>
        refused('unauthorized', 'TokenExpired', () =>
          importTo(image, name, {
            token: cluster.token({
              digest: image.target.digest,
              source: a.name,
              target: b.name,
              issuedAt: new Date(Date.now() - 600_000),
              ttlMs: 60_000,
            }),
          }),
        ));

      it('refuses a token issued for another target node', () =>
        refused('unauthorized', 'TokenWrongTarget', () =>
          importTo(image, name, {
            token: cluster.token({ digest: image.target.digest, source: a.name, target: 'node-c' }),
          }),
        ));

      it('refuses a token issued for another image', () =>
        refused('unauthorized', 'TokenWrongImage', () =>
          importTo(image, name, {
            token: cluster.token({ digest: sha256(Buffer.from('x')), source: a.name, target: b.name }),
          }),
        ));

      it('refuses a plan larger than the size limit', () =>
        refused('terminal', 'PlanTooLarge', () => importTo(image, name, { maxBytes: 1_000_000 })));

      it('refuses Import from anyone but the controller', async () => {
        const asAgent = connectAgent({
          address: b.agent.address,
          tls: cluster.pki.issue({ kind: 'agent', node: 'node-a' }),
          server: { kind: 'agent', node: b.name },
        });
        try {
          await refused('unauthorized', 'NotController', () =>
            asAgent.import({
              digest: image.target.digest,
              sourceAddress: a.agent.address,
              sourceNode: a.name,
              token: 'x',
            }),
          );
        } finally {
          asAgent.close();
        }
      });

      it('refuses a client without a certificate from our CA', async () => {
        const stranger = makeCluster();
        const c = connectAgent({
          address: b.agent.address,
          tls: stranger.controllerTls,
          server: { kind: 'agent', node: b.name },
        });
        try {
          await assert.rejects(c.getNodeInfo({ timeoutMs: 5_000 }), (err: unknown) => isToteError(err, 'transient'));
        } finally {
          c.close();
          await stranger.stop();
        }
      });

      it('refuses a blob whose bytes do not match its digest and removes everything it wrote', async () => {
        const corrupt = buildImage({
          repository: 'salvage/corrupt',
          tag: '1',
          layers: [{ size: 300_000 }, { size: 1_300_000 }],
        });
        await seedImage(a.containerd, corrupt, { name: 'registry.test/salvage/corrupt:1' });
        // Flip one byte of the second layer in node-a's content store: disk corruption the source cannot see.
        const layer = corrupt.platforms[0]!.layers[1]!;
        const file = join(a.daemon.root, 'io.containerd.content.v1.content', 'blobs', 'sha256', layer.digest.slice(7));
        const bytes = readFileSync(file);
        bytes[bytes.length >> 1]! ^= 0xff;
        writeFileSync(file, bytes);
        await refused('integrity', 'BlobDigestMismatch', () =>
          importTo(corrupt, 'registry.test/salvage/corrupt:1', { parallelism: 1 }),
        );
      });

      it('refuses a stream longer than announced (a lying source) and removes everything it wrote', async () => {
        // Fault injection at the one place a real source cannot be made to lie: the peer's readBlob appends bytes.
        const liar = buildImage({ repository: 'salvage/liar', tag: '1', layers: [{ size: 200_000 }] });
        await seedImage(a.containerd, liar, { name: 'registry.test/salvage/liar:1' });
        const real = connectAgent({
          address: a.agent.address,
          tls: cluster.pki.issue({ kind: 'agent', node: b.name }),
          server: { kind: 'agent', node: a.name },
        });
        const layer = liar.platforms[0]!.layers[0]!.digest;
        const lying: BlobPeer = {
          describePlan: (args, o) => real.describePlan(args, o),
          readBlob: (args, o) => ({
            async *[Symbol.asyncIterator]() {
              yield* real.readBlob(args, o);
              if (args.digest === layer) yield Buffer.from('one byte too many');
            },
          }),
        };
        try {
          await refused('integrity', 'BlobLongerThanAnnounced', () =>
            runImport(
              {
                containerd: b.containerd,
                source: lying,
                metrics: createAgentMetrics(new Registry()),
                leaseTtlMs: 60_000,
              },
              {
                digest: liar.target.digest,
                token: cluster.token({ digest: liar.target.digest, source: a.name, target: b.name }),
                sourceNode: a.name,
                names: ['registry.test/salvage/liar:1'],
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
        } finally {
          real.close();
        }
      });

      it('refuses to read from a source that lacks layers (discard_unpacked_layers)', async () => {
        const discarded = buildImage({
          repository: 'salvage/discarded',
          tag: '1',
          layers: [{ size: 100_000 }, { size: 100_000 }],
        });
        const layer = discarded.platforms[0]!.layers[0]!.digest;
        await seedImage(a.containerd, discarded, { name: 'registry.test/salvage/discarded:1', omit: new Set([layer]) });
        const info = await cluster.client(a).getNodeInfo();
        assert.equal(info.layersDiscarded, true);
        const [listed] = await cluster.client(a).listImages([discarded.target.digest]);
        assert.equal(listed?.complete, false);
        assert.deepEqual(listed?.missingDigests, [layer]);
        await refused('terminal', 'SourceIncomplete', () => importTo(discarded, 'registry.test/salvage/discarded:1'));
      });
    });
  });

function makeOtherKey(): string {
  return execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519'], { encoding: 'utf8' });
}
