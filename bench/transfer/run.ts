// Transfer benchmark (`make bench-transfer`): a 1 GiB image in 8 layers moved node-a → node-b by the agents (each in
// its own process), against (1) the Go tote's data path reproduced with containerd's own tools, `ctr images export`
// piped into `ctr images import` (node-a → node-c), and (2) the ceiling: copying the same blob files on this disk with
// an fsync each. Prints progress to stderr and, as its last stdout line, one JSON object with the figures (also
// bench/results/transfer.json, with the machine).
// TOTE_BENCH_RUNS (default 3): the three paths run that many times, interleaved; the figures are medians, each run's are
// printed. TOTE_BENCH_BASELINE=<another checkout>: that checkout's agents also move the image in every run (order
// alternating), for a fair A/B of two data paths on a machine shared with other work.
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createCipheriv, createHash } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  fsyncSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { connectAgent, generateTransferKeys, signTransferToken } from '../../src/agentapi/index.ts';
import {
  connectContainerd,
  gcRefConfigLabel,
  gcRefLayerLabel,
  criManagedLabel,
  criManagedValue,
} from '../../src/containerd/index.ts';
import type { Containerd } from '../../src/containerd/index.ts';
import { startContainerd } from '../../test/support/containerd-daemon.ts';
import type { ContainerdDaemon } from '../../test/support/containerd-daemon.ts';
import { makePki } from '../../test/integration/agent/harness.ts';
import { report } from '../lib/report.ts';

const layerCount = 8;
const layerBytes = 128 * 1024 * 1024;
const name = 'bench.test/tote/big:1';
const log = (msg: string) => process.stderr.write(`bench-transfer: ${msg}\n`);
const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Writes one blob from a generator of pieces (≤ 1 MiB) under `lease`. */
async function writeBlob(
  c: Containerd,
  lease: string,
  digest: string,
  size: number,
  pieces: Iterable<Buffer>,
  labels = {},
) {
  const w = await c.content.openWriter(`bench-${digest}`, { total: size, expected: digest, lease });
  for (const p of pieces) await w.write(p);
  await w.commit(labels);
}

function* keystream(seed: string, size: number): Generator<Buffer> {
  const cipher = createCipheriv(
    'aes-128-ctr',
    createHash('sha256').update(seed).digest().subarray(0, 16),
    Buffer.alloc(16),
  );
  const zero = Buffer.alloc(1 << 20);
  for (let done = 0; done < size; done += zero.length)
    yield cipher.update(zero.subarray(0, Math.min(zero.length, size - done)));
}

/** An uncompressed layer: one 512-byte tar header, `size - 1536` bytes of content, end-of-archive. Deterministic. */
function* layerPieces(i: number): Generator<Buffer> {
  const content = layerBytes - 512 - 1024;
  const h = Buffer.alloc(512);
  h.write(`data/layer-${i}`, 0);
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${content.toString(8).padStart(11, '0')}\0`, 124);
  h.write('00000000000\0', 136);
  h.write('        ', 148);
  h.write('0', 156);
  h.write('ustar\u000000', 257);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  yield h;
  yield* keystream(`bench-layer-${i}`, content); // content is a multiple of 512 (no padding needed)
  yield Buffer.alloc(1024);
}

async function seed(c: Containerd) {
  const lease = 'bench-seed';
  await c.leases.create(lease, new Date(Date.now() + 3_600_000));
  const layers: { digest: string; size: number }[] = [];
  for (let i = 0; i < layerCount; i++) {
    const hash = createHash('sha256');
    for (const p of layerPieces(i)) hash.update(p);
    const digest = `sha256:${hash.digest('hex')}`;
    await writeBlob(c, lease, digest, layerBytes, layerPieces(i));
    layers.push({ digest, size: layerBytes });
    log(`seeded layer ${i + 1}/${layerCount}`);
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
    }),
  );
  const configDigest = sha256(config);
  await writeBlob(c, lease, configDigest, config.length, [config]);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l })),
    }),
  );
  const labels: Record<string, string> = { [gcRefConfigLabel]: configDigest };
  layers.forEach((l, i) => (labels[gcRefLayerLabel(i)] = l.digest));
  const manifestDigest = sha256(manifest);
  await writeBlob(c, lease, manifestDigest, manifest.length, [manifest], labels);
  const target = {
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: manifestDigest,
    size: manifest.length,
  };
  for (const n of [name, `bench.test/tote/big@${manifestDigest}`, configDigest]) {
    await c.images.create({ name: n, target, labels: { [criManagedLabel]: criManagedValue } });
  }
  await c.leases.delete(lease);
  return { manifestDigest, layers, total: layers.reduce((s, l) => s + l.size, 0) + config.length + manifest.length };
}

/** Memory and CPU of a process: VmRSS / VmHWM in KiB, user + system CPU in seconds. */
function procStatus(pid: number): { rssKb: number; hwmKb: number; cpuSeconds: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
  // /proc/<pid>/stat: fields 14 and 15 (utime, stime) in clock ticks (100 per second on Linux), after the `(comm)`.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / 100;
  return { rssKb: kb('VmRSS'), hwmKb: kb('VmHWM'), cpuSeconds };
}

/** Removes every image record and blob from a node, so the next run starts from an empty target. */
async function wipe(c: Containerd): Promise<void> {
  const images = await c.images.list();
  for (const [i, img] of images.entries()) await c.images.delete(img.name, { sync: i === images.length - 1 });
  for (const info of await c.content.list()) await c.content.delete(info.digest);
  if ((await c.content.list()).length > 0) throw new Error('a node kept blobs after its images were removed');
}

const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const round = (x: number, digits = 1) => Number(x.toFixed(digits));
const runs = Math.max(1, Number(process.env.TOTE_BENCH_RUNS ?? 3));
// TOTE_BENCH_AGENT_NODE_OPTIONS: extra node flags for the agent processes, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
const agentNodeOptions = (process.env.TOTE_BENCH_AGENT_NODE_OPTIONS ?? '').split(' ').filter(Boolean);

const daemons: ContainerdDaemon[] = [];
const children: ReturnType<typeof spawn>[] = [];
const pki = makePki();
const work = mkdtempSync(join(tmpdir(), 'tote-bench-'));
try {
  const keys = generateTransferKeys();
  writeFileSync(join(work, 'pub.pem'), keys.publicKeyPem);
  const [a, b, c] = [
    await startContainerd({ name: 'bench-a' }),
    await startContainerd({ name: 'bench-b' }),
    await startContainerd({ name: 'bench-c' }),
  ];
  daemons.push(a, b, c);
  const ca = connectContainerd({ socket: a.socket });
  log('seeding 1 GiB on node-a');
  const image = await seed(ca);

  const startAgent = async (node: string, daemon: ContainerdDaemon, script: string) => {
    pki.issue({ kind: 'agent', node }, node);
    const cfg = {
      nodeName: node,
      socket: daemon.socket,
      // As the DaemonSet mounts it; TOTE_BENCH_CONTENT_API=1 measures the content-API path instead.
      ...(process.env.TOTE_BENCH_CONTENT_API
        ? {}
        : { contentDir: join(daemon.root, 'io.containerd.content.v1.content') }),
      ca: join(pki.dir, 'ca.crt'),
      cert: join(pki.dir, `${node}.crt`),
      key: join(pki.dir, `${node}.key`),
      publicKey: join(work, 'pub.pem'),
    };
    const child = spawn(process.execPath, [...agentNodeOptions, script, JSON.stringify(cfg)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(child);
    for await (const line of createInterface({ input: child.stdout! })) {
      if (line.startsWith('LISTENING ')) return { address: line.slice('LISTENING '.length), pid: child.pid!, child };
    }
    throw new Error(`agent ${node} exited before listening`);
  };
  const controllerTls = pki.issue({ kind: 'controller' }, 'controller');
  const cb = connectContainerd({ socket: b.socket });
  const cc = connectContainerd({ socket: c.socket });
  const copyDir = join(work, 'copy');
  const mb = image.total / 1e6;
  const bytesMoved: number[] = [];
  interface AgentRun {
    mbps: number;
    targetGrowthMb: number;
    sourceGrowthMb: number;
    targetPeakMb: number;
    targetBeforeMb: number;
    targetCpu: number;
    sourceCpu: number;
  }
  interface Run extends AgentRun {
    ctr: number;
    copy: number;
    baseline?: AgentRun;
  }
  /** One agent transfer node-a → node-b into an empty node-b, by fresh agent processes (RSS growth from start). */
  const agentTransfer = async (script: string): Promise<AgentRun> => {
    await wipe(cb);
    const agentA = await startAgent('node-a', a, script);
    const agentB = await startAgent('node-b', b, script);
    const client = connectAgent({
      address: agentB.address,
      tls: controllerTls,
      server: { kind: 'agent', node: 'node-b' },
    });
    settle();
    const before = procStatus(agentB.pid);
    const sourceBefore = procStatus(agentA.pid);
    const started = performance.now();
    const now = new Date();
    const done = await client.import({
      digest: image.manifestDigest,
      sourceAddress: agentA.address,
      sourceNode: 'node-a',
      token: signTransferToken(keys.privateKeyPem, {
        digest: image.manifestDigest,
        source: 'node-a',
        target: 'node-b',
        issuedAt: now,
        expiresAt: new Date(now.getTime() + 30 * 60_000),
      }),
      names: [name],
    });
    const agentSeconds = (performance.now() - started) / 1000;
    // The target holds none of the image: every byte is missing there, and exactly those must move.
    if (done.bytesTransferred !== image.total)
      throw new Error(`moved ${done.bytesTransferred} of ${image.total} bytes`);
    bytesMoved.push(done.bytesTransferred);
    const after = procStatus(agentB.pid);
    const sourceAfter = procStatus(agentA.pid);
    client.close();
    for (const agent of [agentA, agentB]) {
      const exited = once(agent.child, 'exit');
      agent.child.kill('SIGTERM');
      await exited;
    }
    return {
      mbps: mb / agentSeconds,
      targetGrowthMb: (after.hwmKb - before.rssKb) / 1024,
      sourceGrowthMb: (sourceAfter.hwmKb - sourceBefore.rssKb) / 1024,
      targetPeakMb: after.hwmKb / 1024,
      targetBeforeMb: before.rssKb / 1024,
      targetCpu: after.cpuSeconds - before.cpuSeconds,
      sourceCpu: sourceAfter.cpuSeconds - sourceBefore.cpuSeconds,
    };
  };
  const describe = (r: AgentRun) =>
    `${round(r.mbps)} MB/s, RSS growth target ${round(r.targetGrowthMb)} MB source ${round(r.sourceGrowthMb)} MB, ` +
    `CPU target ${round(r.targetCpu, 2)} s source ${round(r.sourceCpu, 2)} s`;
  const agentScript = join(import.meta.dirname, 'agent-process.ts');
  // TOTE_BENCH_BASELINE=<another checkout>: its agents run too, in every run, in alternating order — the only fair
  // comparison of two data paths on a shared machine.
  const baselineScript = process.env.TOTE_BENCH_BASELINE
    ? join(process.env.TOTE_BENCH_BASELINE, 'bench', 'transfer', 'agent-process.ts')
    : undefined;
  /**
   * Each timed path starts with the disk's write-back done (sync): otherwise a path pays for the gigabyte the one
   * before it left dirty in the page cache, and which path that is depends only on the order.
   */
  const settle = () => execFileSync('sync');
  const results: Run[] = [];
  // The three paths run interleaved, `runs` times, on the same machine in the same process: the machine is shared, so
  // the figures are medians and each run is printed to stderr.
  for (let run = 1; run <= runs; run++) {
    await wipe(cc);
    log(`run ${run}/${runs}: agent transfer node-a → node-b`);
    let baseline: AgentRun | undefined;
    if (baselineScript !== undefined && run % 2 === 0) baseline = await agentTransfer(baselineScript);
    const agent = await agentTransfer(agentScript);
    if (baselineScript !== undefined && run % 2 === 1) baseline = await agentTransfer(baselineScript);
    log(`run ${run}/${runs}: agent ${describe(agent)}`);
    if (baseline !== undefined) log(`run ${run}/${runs}: baseline agent ${describe(baseline)}`);

    log(`run ${run}/${runs}: ctr export | ctr import node-a → node-c`);
    settle();
    let started = performance.now();
    execFileSync(
      'bash',
      [
        '-o',
        'pipefail',
        '-c',
        `ctr -a ${a.socket} -n k8s.io images export - ${name} | ctr -a ${c.socket} -n k8s.io images import --no-unpack -`,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    const ctrSeconds = (performance.now() - started) / 1000;

    log(`run ${run}/${runs}: raw copy of the blob files`);
    execFileSync('mkdir', ['-p', copyDir]);
    settle();
    started = performance.now();
    for (const l of image.layers) {
      const dest = join(copyDir, l.digest.slice(7));
      copyFileSync(join(a.root, 'io.containerd.content.v1.content', 'blobs', 'sha256', l.digest.slice(7)), dest);
      const fd = openSync(dest, 'r+');
      fsyncSync(fd);
      closeSync(fd);
    }
    const copySeconds = (performance.now() - started) / 1000;
    rmSync(copyDir, { recursive: true, force: true });

    const r: Run = { ...agent, ctr: mb / ctrSeconds, copy: mb / copySeconds, baseline };
    results.push(r);
    log(`run ${run}/${runs}: ctr ${round(r.ctr)} MB/s, copy ${round(r.copy)} MB/s`);
  }

  const med = (f: (r: Run) => number, digits = 1) => round(median(results.map(f)), digits);
  const all = (f: (r: Run) => number) => results.map((r) => round(f(r)));
  const agentMbps = med((r) => r.mbps);
  const baselineFigures = () => {
    const bl = (r: Run) => r.baseline!;
    return {
      baseline: process.env.TOTE_BENCH_BASELINE,
      baseline_mb_per_s: med((r) => bl(r).mbps),
      vs_baseline: med((r) => r.mbps / bl(r).mbps, 2),
      baseline_vs_export_import: med((r) => bl(r).mbps / r.ctr, 2),
      baseline_agent_rss_growth_mb: med((r) => bl(r).targetGrowthMb),
      baseline_source_agent_rss_growth_mb: med((r) => bl(r).sourceGrowthMb),
      baseline_target_agent_cpu_s_per_gb: med((r) => (bl(r).targetCpu * 1000) / mb, 2),
      baseline_source_agent_cpu_s_per_gb: med((r) => (bl(r).sourceCpu * 1000) / mb, 2),
      runs_baseline_mb_per_s: all((r) => bl(r).mbps),
    };
  };
  const result = {
    image_bytes: image.total,
    // The target starts empty, so the bytes missing there are the image's; each run checks that exactly those moved.
    bytes_missing: image.total,
    bytes_moved: Math.max(...bytesMoved),
    layers: layerCount,
    runs,
    seconds: round(mb / agentMbps, 3),
    mb_per_s: agentMbps,
    export_import_mb_per_s: med((r) => r.ctr),
    raw_copy_mb_per_s: med((r) => r.copy),
    // Ratios within each run (same machine state), then their median.
    vs_export_import: med((r) => r.mbps / r.ctr, 2),
    vs_raw_copy: med((r) => r.mbps / r.copy, 2),
    agent_rss_before_mb: med((r) => r.targetBeforeMb),
    agent_peak_rss_mb: med((r) => r.targetPeakMb),
    agent_rss_growth_mb: med((r) => r.targetGrowthMb),
    source_agent_rss_growth_mb: med((r) => r.sourceGrowthMb),
    // CPU time of the agent processes per GB moved: unlike MB/s, barely affected by other load on the machine.
    target_agent_cpu_s_per_gb: med((r) => (r.targetCpu * 1000) / mb, 2),
    source_agent_cpu_s_per_gb: med((r) => (r.sourceCpu * 1000) / mb, 2),
    runs_mb_per_s: all((r) => r.mbps),
    runs_export_import_mb_per_s: all((r) => r.ctr),
    runs_raw_copy_mb_per_s: all((r) => r.copy),
    runs_agent_rss_growth_mb: all((r) => r.targetGrowthMb),
    runs_source_agent_rss_growth_mb: all((r) => r.sourceGrowthMb),
    ...(baselineScript === undefined ? {} : baselineFigures()),
  };
  report('transfer', result);
  cb.close();
  cc.close();
  ca.close();
} finally {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  for (const d of daemons) await d.stop();
  pki.cleanup();
  rmSync(work, { recursive: true, force: true });
}
