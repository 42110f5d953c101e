// Recovery benchmark (`make bench-recovery`): how long a pod stuck on an image its registry lost takes to run again
// with tote, from its first ErrImagePull to a Ready replacement, split into
//   detect   first ErrImagePull seen → SalvageRecord created
//   locate   record created → Transferring (resolving the digest, finding a source)
//   transfer Transferring → Restarting (agent-to-agent copy and import)
//   restart  stuck pod deleted → replacement pod Ready
// for several image sizes, on the local cluster (real containerd nodes, real agents and controller as processes, the
// node simulator playing the kubelet). Beside it the same kind of pod in a namespace no policy selects (tote disabled
// for it): it stays stuck, and the kubelet-like pull back-off (10 s doubling to 300 s) is what it would wait out —
// forever, since the registry no longer has the image.
//
// Timestamps are taken when this process sees the change on a watch (millisecond resolution; the API's own
// timestamps have one-second resolution). Sizes: TOTE_BENCH_SIZES (default "10MB 100MB 1GiB"), each one of
// 10MB, 100MB, 512MiB, 1GiB; images > 100 MB are built in 128 MiB layers.
import type { V1Pod } from '@kubernetes/client-node';
import type { SalvageRecord } from '../../src/api/index.ts';
import { ensureCluster, kubectl, testNamespace } from '../../test/support/cluster.ts';
import type { ClusterEnv } from '../../test/support/cluster.ts';
import { ensureTote } from '../../test/support/tote.ts';
import { deployment, lostImage, recordsPath, scopedPolicy } from '../../test/support/salvage.ts';
import { isPodReady, podsPath, waitingReason, watchUntil } from '../../test/support/wait.ts';
import { logger, report, seconds } from '../lib/report.ts';

const log = logger('bench-recovery');
const mib = 1024 * 1024;
const sizes: Record<string, { layers: number; layerSize: number }> = {
  '10MB': { layers: 2, layerSize: 5 * 1000 * 1000 },
  '100MB': { layers: 4, layerSize: 25 * 1000 * 1000 },
  '512MiB': { layers: 4, layerSize: 128 * mib },
  '1GiB': { layers: 8, layerSize: 128 * mib },
};
const wanted = (process.env.TOTE_BENCH_SIZES ?? '10MB 100MB 1GiB').split(/\s+/).filter(Boolean);
const stuckObserveMs = Number(process.env.TOTE_BENCH_STUCK_SECONDS ?? 75) * 1000;
const source = 'node-a';
const target = 'node-b';
const untouched = 'node-c';
const runId = `r${Date.now().toString(36)}`;

interface Timeline {
  firstErrImagePull?: number;
  recordCreated?: number;
  transferring?: number;
  restarting?: number;
  completed?: number;
  podDeleted?: number;
  replacementReady?: number;
  phases: string[];
  transferredBytes?: number;
}

/** Follows the pods and the records of `namespace` and stamps each step the first time it is seen. */
async function followRecovery(env: ClusterEnv, namespace: string, timeoutMs: number): Promise<Timeline> {
  const t: Timeline = { phases: [] };
  const stuckPods = new Set<string>();
  const pods = watchUntil<V1Pod, true>(
    env,
    podsPath(namespace),
    {},
    (objects) => {
      const now = Date.now();
      for (const p of objects.values()) {
        const name = p.metadata?.name ?? '';
        const reason = waitingReason(p);
        if ((reason === 'ErrImagePull' || reason === 'ImagePullBackOff') && !stuckPods.has(name)) {
          stuckPods.add(name);
          t.firstErrImagePull ??= now;
        }
        if (stuckPods.has(name) && p.metadata?.deletionTimestamp) t.podDeleted ??= now;
        if (!stuckPods.has(name) && t.podDeleted && isPodReady(p) && !p.metadata?.deletionTimestamp)
          t.replacementReady ??= now;
      }
      // A deleted pod can vanish between two events: its absence counts as deleted too.
      for (const name of stuckPods) if (!objects.has(name)) t.podDeleted ??= now;
      return t.replacementReady ? true : undefined;
    },
    { timeoutMs, what: `a replacement pod Ready in ${namespace}` },
  );
  const records = watchUntil<SalvageRecord & { metadata: object }, true>(
    env,
    recordsPath(namespace),
    {},
    (objects) => {
      const now = Date.now();
      for (const r of objects.values()) {
        t.recordCreated ??= now;
        const phase = r.status?.phase ?? 'Pending';
        if (t.phases.at(-1) !== phase) t.phases.push(phase);
        if (phase === 'Transferring') t.transferring ??= now;
        if (phase === 'Restarting' || phase === 'Pushing' || phase === 'Completed') t.restarting ??= now;
        if (phase === 'Completed') t.completed ??= now;
        t.transferredBytes = r.status?.progress?.transferredBytes ?? t.transferredBytes;
        if (phase === 'Failed' || phase === 'NotActionable') throw new Error(`record ${phase}: ${r.status?.message}`);
      }
      return t.completed ? true : undefined;
    },
    { timeoutMs, what: `a Completed SalvageRecord in ${namespace}` },
  );
  await Promise.all([pods, records]);
  return t;
}

async function recover(env: ClusterEnv, size: string) {
  const spec = sizes[size];
  if (!spec) throw new Error(`unknown size ${size}; one of ${Object.keys(sizes).join(', ')}`);
  const ns = await testNamespace(env, { name: `bench-recovery-${size}` });
  await scopedPolicy(env, ns, {});
  log(
    `${size}: building, pushing and pulling to ${source} (${spec.layers} × ${spec.layerSize} B), then deleting it from the registry`,
  );
  const started = performance.now();
  const image = await lostImage(
    env,
    // A fresh seed per run: an image left on the target by an earlier run would make the pod start at once.
    { repository: `bench/recovery-${size.toLowerCase()}`, tag: runId, seed: runId, ...spec },
    [source],
  );
  const bytes = image.platforms[0]?.layers.reduce((sum, l) => sum + l.size, 0) ?? 0;
  log(`${size}: image ready in ${((performance.now() - started) / 1000).toFixed(1)} s; deploying on ${target}`);
  const follow = followRecovery(env, ns.name, Math.max(180_000, (bytes / 1e6) * 1000));
  await deployment(env, ns.name, 'app', image.reference(env.sourceRegistry), [target]);
  const t = await follow;
  log(`${size}: phases ${t.phases.join(' → ')}`);
  await ns.delete();
  const need = (v: number | undefined, what: string) => {
    if (v === undefined) throw new Error(`${size}: never saw ${what}`);
    return v;
  };
  const first = need(t.firstErrImagePull, 'ErrImagePull');
  return {
    image_bytes: bytes,
    layers: spec.layers,
    detect: seconds(need(t.recordCreated, 'the record') - first),
    locate: seconds(need(t.transferring, 'Transferring') - need(t.recordCreated, 'the record')),
    transfer: seconds(need(t.restarting, 'Restarting') - need(t.transferring, 'Transferring')),
    restart: seconds(need(t.replacementReady, 'the replacement Ready') - need(t.podDeleted, 'the pod deleted')),
    total: seconds(need(t.replacementReady, 'the replacement Ready') - first),
    transferred_bytes: t.transferredBytes ?? 0,
    transfer_mb_per_s: Number((bytes / 1e6 / ((t.restarting! - t.transferring!) / 1000)).toFixed(1)),
  };
}

/** The same situation in a namespace no policy selects: the pod stays stuck; count its pull attempts. */
async function withoutTote(env: ClusterEnv) {
  const ns = await testNamespace(env, { name: 'bench-recovery-no-tote' });
  const image = await lostImage(
    env,
    { repository: 'bench/recovery-stuck', tag: runId, seed: runId, layers: 1, layerSize: 1e6 },
    [source],
  );
  await deployment(env, ns.name, 'app', image.reference(env.sourceRegistry), [untouched]);
  const began = Date.now();
  let ready = false;
  let firstStuck: number | undefined;
  await watchUntil<V1Pod, true>(
    env,
    podsPath(ns.name),
    {},
    (objects) => {
      for (const p of objects.values()) {
        if (isPodReady(p)) ready = true;
        const reason = waitingReason(p);
        if (reason === 'ErrImagePull' || reason === 'ImagePullBackOff') firstStuck ??= Date.now();
      }
      return ready ? true : undefined;
    },
    { timeoutMs: stuckObserveMs },
  ).catch(() => undefined);
  const events = await kubectl(env, [
    'get',
    'events',
    '-n',
    ns.name,
    '-o',
    'jsonpath={range .items[*]}{.reason}{" "}{.count}{"\\n"}{end}',
  ]);
  const count = (reason: string) =>
    events.stdout
      .split('\n')
      .filter((l) => l.startsWith(`${reason} `))
      .reduce((sum, l) => sum + Number(l.split(' ')[1] || 1), 0);
  const records = await kubectl(env, ['get', 'salvagerecords', '-n', ns.name, '-o', 'name']);
  await ns.delete();
  return {
    stuck_without_tote: !ready,
    observed_s: seconds(Date.now() - began),
    stuck_after_s: firstStuck ? seconds(firstStuck - began) : null,
    pull_attempts: count('Pulling'),
    backoff_events: count('BackOff'),
    records_created: records.stdout.trim() ? records.stdout.trim().split('\n').length : 0,
  };
}

/** The kubelet's image pull back-off (10 s doubling to 300 s): when each retry happens after the first failure. */
function kubeletBackoffSchedule(retries = 10): number[] {
  const at: number[] = [];
  let delay = 10;
  let t = 0;
  for (let i = 0; i < retries; i++) {
    t += delay;
    at.push(t);
    delay = Math.min(300, delay * 2);
  }
  return at;
}

const env = await ensureCluster();
for (const n of [source, target, untouched])
  if (!env.nodes.includes(n)) throw new Error(`the cluster at ${env.dir} lacks ${n}`);
log(`cluster ${env.dir}; starting tote`);
await ensureTote(env);
const recover_s: Record<string, Awaited<ReturnType<typeof recover>>> = {};
for (const size of wanted) {
  recover_s[size] = await recover(env, size);
  log(`${size}: ${JSON.stringify(recover_s[size])}`);
}
log(`without tote: observing a stuck pod on ${untouched} for ${stuckObserveMs / 1000} s`);
const stuck = await withoutTote(env);
log(`without tote: ${JSON.stringify(stuck)}`);
report('recovery', {
  recover_s,
  stuck_without_tote: stuck.stuck_without_tote,
  without_tote: stuck,
  kubelet_backoff_retry_at_s: kubeletBackoffSchedule(),
  kubelet_backoff_note:
    'without tote the image never comes back: the kubelet retries at these offsets (10 s doubling to 300 s) then every 300 s, forever',
  source_node: source,
  target_node: target,
  cluster: env.dir,
});
