// Fan-out benchmark (`make bench-fanout`): one image, alive only on node-a after its registry lost it, needed at once
// by a Deployment with one pod on each of ten other nodes (node-b … node-k of the benchmark cluster). Reports the time
// from the Deployment's creation to the last pod Ready, each record's source, and the bytes every agent sent (read
// from the agents' tote_agent_bytes_sent_total before and after): how much the source(s) had to serve. With the
// controller's --transfers-per-source (default 1) the image spreads as a tree: source_reads is how many times node-a
// was read, tree_depth the rounds of copies, s_per_doubling the time per round.
// Settings: TOTE_BENCH_FANOUT_MB (image size, default 100), TOTE_BENCH_FANOUT_TARGETS (default 10).
import type { SalvageRecord } from '../../src/api/index.ts';
import { ensureCluster, testNamespace } from '../../test/support/cluster.ts';
import { ensureTote } from '../../test/support/tote.ts';
import type { ToteProcess } from '../../test/support/tote.ts';
import { deployment, lostImage, scopedPolicy, waitForRecords, waitForRunningPods } from '../../test/support/salvage.ts';
import { logger, report, seconds } from '../lib/report.ts';
import { spreadOf } from '../lib/spread.ts';

const log = logger('bench-fanout');
const sizeMb = Number(process.env.TOTE_BENCH_FANOUT_MB ?? 100);
const wantedTargets = Number(process.env.TOTE_BENCH_FANOUT_TARGETS ?? 10);
const source = 'node-a';
const runId = `f${Date.now().toString(36)}`;

async function bytesSent(agents: Map<string, ToteProcess>): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  await Promise.all(
    [...agents].map(async ([node, proc]) => {
      const text = await (await fetch(`${proc.metricsUrl}/metrics`)).text();
      let sum = 0;
      for (const line of text.split('\n'))
        if (line.startsWith('tote_agent_bytes_sent_total')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
      out.set(node, sum);
    }),
  );
  return out;
}

const env = await ensureCluster();
const targets = env.nodes.filter((n) => n !== source).slice(0, wantedTargets);
if (targets.length < wantedTargets)
  log(`the cluster has ${targets.length + 1} nodes: fanning out to ${targets.length}, not ${wantedTargets}`);
const tote = await ensureTote(env);
const ns = await testNamespace(env, { name: 'bench-fanout' });
await scopedPolicy(env, ns, { limits: { maxConcurrentTransfers: targets.length } });
const layers = 4;
log(`building a ${sizeMb} MB image in ${layers} layers, on ${source} only`);
const image = await lostImage(
  env,
  { repository: 'bench/fanout', tag: runId, seed: runId, layers, layerSize: Math.round((sizeMb * 1e6) / layers) },
  [source],
);
const imageBytes = image.platforms[0]?.layers.reduce((sum, l) => sum + l.size, 0) ?? 0;
const sentBefore = await bytesSent(tote.agents);
log(`deploying ${targets.length} replicas, one per node: ${targets.join(' ')}`);
const started = Date.now();
await deployment(env, ns.name, 'app', image.reference(env.sourceRegistry), targets, targets.length);
const records = await waitForRecords(
  env,
  ns.name,
  targets.length,
  (r: SalvageRecord) => r.status?.phase === 'Completed',
  {
    timeoutMs: 900_000,
  },
);
const recordsDone = Date.now();
await waitForRunningPods(env, ns.name, 'app', targets.length, { timeoutMs: 300_000 });
const allReady = Date.now();
const sentAfter = await bytesSent(tote.agents);
const sentBy: Record<string, number> = {};
for (const [node, after] of sentAfter) {
  const delta = after - (sentBefore.get(node) ?? 0);
  if (delta > 0) sentBy[node] = delta;
}
const totalSent = Object.values(sentBy).reduce((a, b) => a + b, 0);
const spread = spreadOf(records, new Set([source]));
const durations = records
  .map((r) => {
    const h = r.status?.history ?? [];
    const transferring = h.find((e) => e.phase === 'Transferring')?.time;
    const restarting = h.find((e) => e.phase === 'Restarting')?.time;
    return transferring && restarting ? (Date.parse(restarting) - Date.parse(transferring)) / 1000 : undefined;
  })
  .filter((d): d is number => d !== undefined)
  .sort((a, b) => a - b);
await ns.delete();
report('fanout', {
  image_bytes: imageBytes,
  targets: targets.length,
  nodes_in_cluster: env.nodes.length,
  total_s: seconds(allReady - started),
  records_completed_s: seconds(recordsDone - started),
  bytes_sent_total: totalSent,
  bytes_sent_by_node: sentBy,
  source_bytes_over_image_bytes: Number((totalSent / imageBytes).toFixed(2)),
  bytes_read_from_source_node: sentBy[source] ?? 0,
  records_by_source: spread.records_by_source,
  source_reads: Number(((sentBy[source] ?? 0) / imageBytes).toFixed(2)),
  tree_depth: spread.tree_depth,
  s_per_doubling: spread.tree_depth > 0 ? seconds((recordsDone - started) / spread.tree_depth) : null,
  transfer_s_min: durations[0] ?? null,
  transfer_s_max: durations.at(-1) ?? null,
  aggregate_mb_per_s: Number(((targets.length * imageBytes) / 1e6 / ((recordsDone - started) / 1000)).toFixed(1)),
  note: 'transfer_s from record history timestamps (1 s resolution); total_s from Deployment creation to the last pod Ready, seen on a watch',
});
