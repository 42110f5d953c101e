// Footprint benchmark (`make bench-footprint`): the resident memory of the shipped bundle (dist/tote.mjs, with the
// Node flags and environment of bench.mk's BENCH_ENV), which every node pays once for its agent:
//   bare     a Node process doing nothing, with the same flags: the floor no code of ours can go under
//   idle     an agent and the controller, started afresh and left alone for TOTE_BENCH_SETTLE_SECONDS (default 30)
//   after    the same processes once one image (TOTE_BENCH_FOOTPRINT_MB, default 100) was salvaged from node-a to
//            node-b and they were left alone again
// Each figure is the median of ten samples of VmRSS (/proc/<pid>/status) one second apart; peak is VmHWM.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { ensureCluster, testNamespace } from '../../test/support/cluster.ts';
import { ensureTote, stopTote } from '../../test/support/tote.ts';
import type { ToteProcess } from '../../test/support/tote.ts';
import { deployment, lostImage, scopedPolicy, waitForRecords, waitForRunningPods } from '../../test/support/salvage.ts';
import { logger, report } from '../lib/report.ts';

const log = logger('bench-footprint');
const settleMs = Number(process.env.TOTE_BENCH_SETTLE_SECONDS ?? 30) * 1000;
const sizeMb = Number(process.env.TOTE_BENCH_FOOTPRINT_MB ?? 100);
const nodeFlags = (process.env.TOTE_NODE_FLAGS ?? '').split(' ').filter(Boolean);
const runId = `m${Date.now().toString(36)}`;

/**
 * VmRSS, VmHWM or RssAnon of `pid` in MB. RssAnon is the process's own memory (heap, malloc); the rest of VmRSS is
 * mostly the node binary's pages, shared with every other Node process started from the same file.
 */
function statusMb(pid: number, field: 'VmRSS' | 'VmHWM' | 'RssAnon'): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${field}:`));
  return Number(/(\d+)/.exec(line ?? '')?.[1] ?? 0) / 1024;
}

/** The median of ten samples of VmRSS (or RssAnon), one second apart. */
async function residentMb(pid: number, field: 'VmRSS' | 'RssAnon' = 'VmRSS'): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < 10; i++) {
    samples.push(statusMb(pid, field));
    await sleep(1000);
  }
  samples.sort((a, b) => a - b);
  return Number(((samples[4]! + samples[5]!) / 2).toFixed(1));
}

/** A Node process that does nothing, with the flags tote runs with. */
async function bareNodeMb(): Promise<{ rss: number; anon: number }> {
  const child = spawn(process.execPath, [...nodeFlags, '-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' });
  try {
    await sleep(3000);
    const [rss, anon] = await Promise.all([residentMb(child.pid ?? 0), residentMb(child.pid ?? 0, 'RssAnon')]);
    return { rss, anon };
  } finally {
    child.kill();
  }
}

const env = await ensureCluster();
log('restarting tote from the bundle so its processes are fresh');
await stopTote(env);
const tote = await ensureTote(env);
const agent = tote.agents.get('node-b') as ToteProcess;
const source = tote.agents.get('node-a') as ToteProcess;
const controller = tote.controller;
log(`idle for ${settleMs / 1000} s`);
await sleep(settleMs);
const bare = await bareNodeMb();
const [agentIdle, agentIdleAnon, controllerIdle] = await Promise.all([
  residentMb(agent.pid),
  residentMb(agent.pid, 'RssAnon'),
  residentMb(controller.pid),
]);
log(`bare ${bare.rss} MB, agent ${agentIdle} MB, controller ${controllerIdle} MB idle; salvaging ${sizeMb} MB`);

const ns = await testNamespace(env, { name: 'bench-footprint' });
await scopedPolicy(env, ns, {});
const image = await lostImage(
  env,
  { repository: 'bench/footprint', tag: runId, seed: runId, layers: 4, layerSize: Math.round((sizeMb * 1e6) / 4) },
  ['node-a'],
);
await deployment(env, ns.name, 'app', image.reference(env.sourceRegistry), ['node-b'], 1);
await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Completed', { timeoutMs: 300_000 });
await waitForRunningPods(env, ns.name, 'app', 1, { timeoutMs: 300_000 });
log(`salvaged; idle for ${settleMs / 1000} s again`);
await sleep(settleMs);
const [agentAfter, agentAfterAnon, sourceAfter, controllerAfter] = await Promise.all([
  residentMb(agent.pid),
  residentMb(agent.pid, 'RssAnon'),
  residentMb(source.pid),
  residentMb(controller.pid),
]);
await ns.delete();
report('footprint', {
  node_flags: nodeFlags.join(' '),
  image_bytes: image.platforms[0]?.layers.reduce((sum, l) => sum + l.size, 0) ?? 0,
  bare_node_rss_mb: bare.rss,
  agent_idle_rss_mb: agentIdle,
  agent_after_transfer_rss_mb: agentAfter,
  // The process's own memory, without the shared pages of the node binary.
  bare_node_anon_mb: bare.anon,
  agent_idle_anon_mb: agentIdleAnon,
  agent_after_transfer_anon_mb: agentAfterAnon,
  agent_peak_rss_mb: Number(statusMb(agent.pid, 'VmHWM').toFixed(1)),
  source_agent_after_transfer_rss_mb: sourceAfter,
  controller_idle_rss_mb: controllerIdle,
  controller_after_transfer_rss_mb: controllerAfter,
  note: 'median of ten VmRSS (anon: RssAnon) samples 1 s apart, after a settle; peak is the target agent VmHWM',
});
