// Inventory benchmark (`make bench-inventory`): how long the agent takes to answer the controller's inventory calls
// as a node's image count grows — 50, 500 and 2,000 images in a real containerd daemon (Debian's 1.6, started by
// test/support/containerd-daemon.ts), seeded through tote's own adapter with small single-layer images recorded the
// way CRI records a pull (tag, repo@digest and the config id, managed label). The agent runs in its own process
// (bench/transfer/agent-process.ts); the client speaks mTLS like the controller.
// Measured per size: ListImages of everything (what the controller's inventory asks for), ListImages filtered to one
// digest, ResolveTag of a tag, GetNodeInfo (it walks every image too, for layers_discarded).
// Settings: TOTE_BENCH_INVENTORY_SIZES (default "50 500 2000"), TOTE_BENCH_REPEAT (default 20).
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { connectAgent, generateTransferKeys } from '../../src/agentapi/index.ts';
import {
  connectContainerd,
  criManagedLabel,
  criManagedValue,
  gcRefConfigLabel,
  gcRefLayerLabel,
} from '../../src/containerd/index.ts';
import type { Containerd } from '../../src/containerd/index.ts';
import { startContainerd } from '../../test/support/containerd-daemon.ts';
import { makePki } from '../../test/integration/agent/harness.ts';
import { logger, percentile, processMemory, report } from '../lib/report.ts';

const log = logger('bench-inventory');
const sizes = (process.env.TOTE_BENCH_INVENTORY_SIZES ?? '50 500 2000').split(/\s+/).filter(Boolean).map(Number);
const repeat = Number(process.env.TOTE_BENCH_REPEAT ?? 20);
const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const repo = (i: number) => `bench.test/inventory/app-${i}`;

async function put(c: Containerd, lease: string, data: Buffer, labels: Record<string, string> = {}): Promise<string> {
  const digest = sha256(data);
  const w = await c.content.openWriter(`bench-inventory-${digest}`, { total: data.length, expected: digest, lease });
  await w.write(data);
  await w.commit(labels);
  return digest;
}

/** One image like a CRI pull leaves it: layer, config, manifest, and three records. Returns its manifest digest. */
async function seedImage(c: Containerd, lease: string, i: number): Promise<string> {
  const layer = randomBytes(4096);
  const layerDigest = await put(c, lease, layer);
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layerDigest] }, i }),
  );
  const configDigest = await put(c, lease, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layer.length }],
    }),
  );
  const manifestDigest = await put(c, lease, manifest, {
    [gcRefConfigLabel]: configDigest,
    [gcRefLayerLabel(0)]: layerDigest,
  });
  const target = {
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: manifestDigest,
    size: manifest.length,
  };
  for (const name of [`${repo(i)}:v1`, `${repo(i)}@${manifestDigest}`, configDigest])
    await c.images.create({ name, target, labels: { [criManagedLabel]: criManagedValue } });
  return manifestDigest;
}

async function time<T>(times: number, fn: (i: number) => Promise<T>) {
  const ms: number[] = [];
  let last: T | undefined;
  for (let i = 0; i < times; i++) {
    const t = performance.now();
    last = await fn(i);
    ms.push(performance.now() - t);
  }
  ms.sort((a, b) => a - b);
  const round = (v: number) => Number(v.toFixed(2));
  return {
    stats: {
      p50_ms: round(percentile(ms, 50)),
      p99_ms: round(percentile(ms, 99)),
      max_ms: round(ms.at(-1) ?? 0),
      mean_ms: round(ms.reduce((a, b) => a + b, 0) / ms.length),
    },
    last,
  };
}

const pki = makePki();
const daemon = await startContainerd({ name: 'bench-inventory' });
const children: ReturnType<typeof spawn>[] = [];
try {
  const keys = generateTransferKeys();
  writeFileSync(join(pki.dir, 'public.pem'), keys.publicKeyPem);
  pki.issue({ kind: 'agent', node: 'node-a' }, 'node-a');
  const child = spawn(
    process.execPath,
    [
      join(import.meta.dirname, '../transfer/agent-process.ts'),
      JSON.stringify({
        nodeName: 'node-a',
        socket: daemon.socket,
        ca: join(pki.dir, 'ca.crt'),
        cert: join(pki.dir, 'node-a.crt'),
        key: join(pki.dir, 'node-a.key'),
        publicKey: join(pki.dir, 'public.pem'),
      }),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.push(child);
  const address = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`agent exited (${code})`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('LISTENING ')) resolve(line.slice('LISTENING '.length));
    });
  });
  const client = connectAgent({
    address,
    tls: pki.issue({ kind: 'controller' }, 'controller'),
    server: { kind: 'agent', node: 'node-a' },
  });
  const c = connectContainerd({ socket: daemon.socket });
  const lease = 'bench-inventory-seed';
  await c.leases.create(lease, new Date(Date.now() + 3_600_000));
  const digests: string[] = [];
  const results: Record<string, unknown> = {};
  for (const size of sizes) {
    const t = performance.now();
    for (let i = digests.length; i < size; i++) digests.push(await seedImage(c, lease, i));
    log(`${size} images seeded (${((performance.now() - t) / 1000).toFixed(1)} s); measuring`);
    await client.listImages(); // warm the connection and the agent
    const listAll = await time(repeat, () => client.listImages(undefined, { timeoutMs: 120_000 }));
    const listOne = await time(repeat, (i) => client.listImages([digests[(i * 7919) % digests.length]!]));
    const resolve = await time(repeat, (i) => client.resolveTag(`${repo((i * 104729) % digests.length)}:v1`));
    // What the controller sends a node in a burst: twenty tags in one ListImages by names, one of them on the node.
    const findNames = await time(repeat, (i) =>
      client.findImages([
        `${repo((i * 104729) % digests.length)}:v1`,
        ...Array.from({ length: 19 }, (_, k) => `${repo((i * 104729 + k + 1) % digests.length)}:absent`),
      ]),
    );
    if (findNames.last?.length !== 1)
      throw new Error(`ListImages by names found ${findNames.last?.length} images, not 1`);
    const info = await time(repeat, () => client.getNodeInfo({ timeoutMs: 120_000 }));
    const images = listAll.last ?? [];
    if (images.length !== size) throw new Error(`ListImages returned ${images.length} images, expected ${size}`);
    if (!images.every((img) => img.complete)) throw new Error('an image was reported incomplete');
    results[String(size)] = {
      list_all: listAll.stats,
      list_one_digest: listOne.stats,
      resolve_tag: resolve.stats,
      list_by_20_names: findNames.stats,
      get_node_info: info.stats,
      records: size * 3,
      blobs: size * 3,
      agent_rss_mb: processMemory(child.pid!).rss_mb,
    };
    log(`${size}: ${JSON.stringify(results[String(size)])}`);
  }
  client.close();
  c.close();
  report('inventory', {
    images: results,
    repeat,
    containerd: daemon.version,
    note: 'each image: 1 layer of 4 KiB, config, manifest; 3 image records (tag, repo@digest, config id) as CRI creates them',
  });
} finally {
  for (const child of children) child.kill('SIGTERM');
  await daemon.stop();
  pki.cleanup();
}
