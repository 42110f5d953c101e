// Fault injection on a cluster of its own. Chaos tests kill and restart processes (tote's agents and controller,
// containerd, kube-apiserver), so they never run on the shared test cluster: `useChaosCluster()` points this process at
// /tmp/tote-chaos (TOTE_CHAOS_CLUSTER_DIR overrides), which hack/cluster/up.sh starts on free ports when it is not up.
//
// Restarting a cluster component: hack/cluster/up.sh is not a restarter (when any component is down it tears the whole
// cluster down and builds a new one, new certificates and ports included), so `killComponent` reads the process's
// command line from /proc before killing it and `restart()` starts the same command again, detached, with the same log
// and pid files — exactly what up.sh would have started.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import type { V1Pod } from '@kubernetes/client-node';
import type { SalvageRecord } from '../../src/api/index.ts';
import { applyCrds, ensureCluster } from './cluster.ts';
import type { ClusterEnv } from './cluster.ts';
import { CriClient } from './node-simulator/cri.ts';
import { isRunning, prepareTote, startAgent, startController } from './tote.ts';
import type { ToteDeployment, TotePaths, ToteProcess } from './tote.ts';

export const chaosClusterDir = process.env.TOTE_CHAOS_CLUSTER_DIR ?? '/tmp/tote-chaos';

/** Makes this process (and the hack/cluster scripts it runs) use `dir` as its cluster; call before ensureCluster. */
export function useClusterDir(dir: string): void {
  process.env.TOTE_CLUSTER_DIR = dir;
}

/** The chaos cluster, started when it is not up, with this checkout's CRDs. */
export async function useChaosCluster(): Promise<ClusterEnv> {
  useClusterDir(chaosClusterDir);
  const env = await ensureCluster();
  await applyCrds(env);
  return env;
}

/**
 * Controller flags for chaos runs: short retry delays so a retry after a fault is observed in seconds, and a short
 * leader lease so a standby's takeover fits a test. Every chaos test uses the same flags, so whichever test starts
 * the controller first, the others find it configured alike.
 */
export const chaosControllerArgs = [
  '--transfer-retry-base-delay=1s',
  '--transfer-retry-max-delay=4s',
  '--requeue-base-delay=100ms',
  '--requeue-max-delay=5s',
  '--leader-elect-lease-duration=6s',
  '--leader-elect-renew-deadline=4s',
  '--leader-elect-retry-period=1s',
];

/** tote on the chaos cluster: every agent, and controller `0` with the chaos flags. */
export async function ensureChaosTote(env: ClusterEnv): Promise<ToteDeployment> {
  const paths = await prepareTote(env);
  // The controller first: it signs the agents' certificates.
  const controller = await startController(env, paths, { args: chaosControllerArgs });
  const agents = new Map<string, ToteProcess>();
  for (const n of env.nodes) agents.set(n, await startAgent(env, paths, n));
  return { paths, agents, controller };
}

export const startChaosController = (env: ClusterEnv, paths: TotePaths, instance = '0') =>
  startController(env, paths, { instance, args: chaosControllerArgs });

/** Polls (with a deadline) until `pid` has exited. */
export async function waitExited(pid: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (isRunning(pid)) {
    if (Date.now() > deadline) throw new Error(`process ${pid} still runs ${timeoutMs} ms after being killed`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** SIGKILLs a tote process (agent or controller) and waits until it is gone; its files stay for inspection. */
export async function killTote(proc: ToteProcess): Promise<void> {
  if (isRunning(proc.pid)) process.kill(proc.pid, 'SIGKILL');
  await waitExited(proc.pid);
}

export interface KilledComponent {
  name: string;
  argv: string[];
  /** Starts the same command line again (detached, same log and pid files); resolves once `ready()` holds. */
  restart(ready: () => Promise<boolean>, timeoutMs?: number): Promise<void>;
}

/** Kills a component hack/cluster/up.sh started (`kube-apiserver`, `containerd-node-b`, …) by its recorded pid. */
export async function killComponent(
  env: ClusterEnv,
  name: string,
  signal: NodeJS.Signals = 'SIGKILL',
): Promise<KilledComponent> {
  const pidFile = join(env.dir, 'pids', `${name}.pid`);
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  if (!isRunning(pid)) throw new Error(`${name} (pid ${pid}) is not running`);
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  process.kill(pid, signal);
  await waitExited(pid);
  return {
    name,
    argv,
    async restart(ready, timeoutMs = 60_000) {
      const out = openSync(join(env.dir, 'logs', `${name}.log`), 'a');
      const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', out, out] });
      closeSync(out);
      child.unref();
      if (child.pid === undefined) throw new Error(`could not restart ${name}`);
      writeFileSync(pidFile, String(child.pid));
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (!isRunning(child.pid)) throw new Error(`${name} exited right after its restart`);
        if (await ready().catch(() => false)) return;
        if (Date.now() > deadline) throw new Error(`${name} not ready ${timeoutMs} ms after its restart`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
  };
}

/** Whether the node's CRI reports `ref` (what the kubelet would see). */
export async function criHasImage(socket: string, ref: string): Promise<boolean> {
  const cri = new CriClient(socket);
  try {
    return (await cri.imageStatus(ref)) !== undefined;
  } finally {
    cri.close();
  }
}

/**
 * Sums a Prometheus text-format counter (all series, or those whose labels include `labels`) served at `baseUrl`/metrics
 * (ToteProcess.metricsUrl: with --metrics-bind-address set, /metrics is served there, not on the probe address).
 */
export async function scrapeCounter(
  baseUrl: string,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const response = await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(5_000) });
  const text = await response.text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const series = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => series.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

/** The phases of a record's history, in order (for "completed once" checks). */
export const historyPhases = (r: SalvageRecord): string[] => (r.status?.history ?? []).map((h) => h.phase);

/** How many history entries entered `phase` (a record that completes once has exactly one Completed entry). */
export const entries = (r: SalvageRecord, phase: string): number =>
  (r.status?.history ?? []).filter((h) => h.phase === phase && h.reason !== 'PodJoined').length;

/**
 * Serialises chaos test files: they share one cluster and kill its processes, so two files must never run at once,
 * whatever --test-concurrency says. An exclusive lock file holding the owner's pid; a dead owner's lock is taken over.
 */
export function acquireChaosLock(timeoutMs = 30 * 60_000): Promise<() => void> {
  return acquireLock(`${chaosClusterDir}.lock`, timeoutMs);
}

/** An exclusive lock file holding the owner's pid (a dead owner's lock is taken over); resolves to its release. */
export async function acquireLock(file: string, timeoutMs: number): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = openSync(file, 'wx');
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      return () => {
        if (readOwner(file) === process.pid) rmSync(file, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = readOwner(file);
      if (owner !== undefined && !isRunning(owner)) rmSync(file, { force: true });
      else if (Date.now() > deadline)
        throw new Error(`${file} held by pid ${owner} for ${timeoutMs} ms`, { cause: err });
      else await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

function readOwner(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Every pod UID seen in a namespace (ADDED or MODIFIED) and every deletion (UIDs and names), from a watch started now. */
export async function trackPods(
  env: ClusterEnv,
  namespace: string,
): Promise<{
  uids: Set<string>;
  /** UID → pod name, for every pod seen. */
  names: Map<string, string>;
  deleted: Set<string>;
  deletedNames: Set<string>;
  stop(): void;
}> {
  const kc = new KubeConfig();
  kc.loadFromFile(env.kubeconfig);
  const uids = new Set<string>();
  const names = new Map<string, string>();
  const deleted = new Set<string>();
  const deletedNames = new Set<string>();
  let abort: AbortController | undefined;
  let stopped = false;
  const start = async () => {
    if (stopped) return;
    abort = await new Watch(kc).watch(
      `/api/v1/namespaces/${namespace}/pods`,
      {},
      (type, pod: V1Pod) => {
        const uid = pod.metadata?.uid ?? '';
        uids.add(uid);
        names.set(uid, pod.metadata?.name ?? '');
        if (type === 'DELETED' || pod.metadata?.deletionTimestamp) {
          deleted.add(uid);
          deletedNames.add(pod.metadata?.name ?? '');
        }
      },
      () => void start().catch(() => undefined),
    );
  };
  await start();
  return {
    uids,
    names,
    deleted,
    deletedNames,
    stop: () => {
      stopped = true;
      abort?.abort();
    },
  };
}
