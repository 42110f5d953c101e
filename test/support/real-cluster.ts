// The cluster of the stories on real kubelets (test/e2e/real-*.test.ts): real kubelets v1.36.3 in their own network namespaces (TOTE_KUBELET=real, docs/cluster.md),
// in a state directory of its own so it never disturbs the simulated cluster that integration tests share:
// TOTE_REAL_CLUSTER_DIR (default /tmp/tote-real). Its nodes run mixed containerd versions by default (node-a on Debian's
// 1.6, node-b and node-c on 2.x; TOTE_REAL_CONTAINERD overrides), so every story crosses versions one way or the other.
// A missing kubelet, containerd or busybox fails the run (hack/cluster/up.sh builds or refuses); nothing skips.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Node } from '@kubernetes/client-node';
import { promisify } from 'node:util';
import { ensureCluster, kubectl } from './cluster.ts';
import type { ClusterEnv } from './cluster.ts';
import type { ImageSpec } from './images.ts';
import { acquireLock, useClusterDir, waitExited } from './chaos.ts';
import { watchUntil } from './wait.ts';

const run = promisify(execFile);

export const realClusterDir = process.env.TOTE_REAL_CLUSTER_DIR ?? '/tmp/tote-real';
export const realClusterContainerd = process.env.TOTE_REAL_CONTAINERD ?? 'node-a=1.6 node-b=2 node-c=2';

/**
 * Points this process at the real-node cluster (or another one in `dir`, for a story that must not share it) and
 * starts it unless it runs (serialised with a lock file: several test files may ask at once). Throws when the
 * directory holds a simulated cluster.
 */
export async function useRealCluster(dir = realClusterDir): Promise<ClusterEnv> {
  useClusterDir(dir);
  process.env.TOTE_KUBELET = 'real';
  process.env.TOTE_CONTAINERD = realClusterContainerd;
  const release = await acquireLock(`${dir}.lock`, 30 * 60_000);
  let env: ClusterEnv;
  try {
    env = await ensureCluster();
  } finally {
    release();
  }
  if (env.kubelet !== 'real') throw new Error(`${dir} holds a ${env.kubelet} cluster, not real kubelets`);
  return env;
}

/** Runs the node's own ctr (the build matching its containerd) against its socket in containerd's k8s.io namespace. */
export async function nodeCtr(env: ClusterEnv, node: string, args: string[]): Promise<string> {
  const ctr = env.nodeCtr.get(node);
  const socket = env.nodeSockets.get(node);
  if (!ctr || !socket) throw new Error(`no ctr or socket for node ${node}`);
  const { stdout } = await run(ctr, ['--address', socket, '-n', 'k8s.io', ...args], { maxBuffer: 16 << 20 });
  return stdout;
}

/** The digests of the images a node's containerd holds, as `ctr images ls` prints them. */
export async function nodeImageDigests(env: ClusterEnv, node: string): Promise<Set<string>> {
  const out = await nodeCtr(env, node, ['images', 'ls', '--quiet']);
  const names = out.split('\n').filter(Boolean);
  const digests = new Set<string>();
  for (const line of (await nodeCtr(env, node, ['images', 'ls'])).split('\n').slice(1)) {
    const digest = line.split(/\s+/).find((w) => w.startsWith('sha256:'));
    if (digest) digests.add(digest);
  }
  if (names.length > 0 && digests.size === 0) throw new Error(`could not read digests from ctr images ls on ${node}`);
  return digests;
}

/** `kubectl logs` of a pod's container (through the API server and the node's kubelet). */
export async function podLogs(env: ClusterEnv, namespace: string, pod: string): Promise<string> {
  const r = await kubectl(env, ['logs', '-n', namespace, pod]);
  if (r.code !== 0) throw new Error(`kubectl logs ${namespace}/${pod}: ${r.stderr}`);
  return r.stdout;
}

/** A small image whose container prints one line naming its pod, then stays up (see waitForLogLine). */
export const runningImage = (repository: string): ImageSpec => ({
  repository,
  layers: 2,
  layerSize: 256 * 1024,
  command: ['sh', '-c', 'echo "tote e2e: running in $(hostname)"; exec sleep 3600'],
});

/** Polls `kubectl logs` (with a deadline) until the line of a runningImage container is there. */
export async function waitForLogLine(
  env: ClusterEnv,
  namespace: string,
  pod: string,
  timeoutMs = 30_000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const last = await podLogs(env, namespace, pod).catch((err: Error) => err.message);
    if (last.includes(`tote e2e: running in ${pod}`)) return last;
    if (Date.now() > deadline) throw new Error(`no log line from ${namespace}/${pod} after ${timeoutMs} ms: ${last}`);
    await new Promise((resolve) => setTimeout(resolve, 500)); // polling interval of a deadline-bound wait
  }
}

/** Chain IDs of an image's layers, bottom first: the keys of its unpacked snapshots. */
export function chainIds(diffIDs: string[]): string[] {
  const out: string[] = [];
  for (const diffID of diffIDs) {
    const parent = out.at(-1);
    out.push(parent ? `sha256:${createHash('sha256').update(`${parent} ${diffID}`).digest('hex')}` : diffID);
  }
  return out;
}

/**
 * Removes the unpacked snapshots of an image's top `count` layers from a node (top first, as ctr requires): real
 * containerd then has to unpack those layers again from its content store when a container is created.
 */
export async function removeSnapshots(env: ClusterEnv, node: string, diffIDs: string[], count: number): Promise<void> {
  const snapshotter = env.vars.TOTE_SNAPSHOTTER ?? 'overlayfs';
  for (const key of chainIds(diffIDs).slice(-count).reverse())
    await nodeCtr(env, node, ['snapshots', '--snapshotter', snapshotter, 'rm', key]);
}

/**
 * Restarts a node's kubelet with `settings` (KubeletConfiguration lines, e.g. `imageMaximumGCAge: 30s`) replacing the
 * same keys of its configuration, for a story that needs another kubelet behaviour; waits until the new kubelet
 * reports the node. Returns how to restart it with its own configuration again (call it in t.after). A configuration
 * the kubelet refuses fails at once with its log, after the node's own kubelet is back.
 */
export async function restartKubeletWith(
  env: ClusterEnv,
  node: string,
  settings: Record<string, string>,
): Promise<() => Promise<void>> {
  const dir = join(env.dir, 'nodes', node);
  const own = join(dir, 'kubelet.yaml');
  const story = join(dir, 'kubelet-story.yaml');
  const lines = readFileSync(own, 'utf8')
    .split('\n')
    .filter((line) => !Object.keys(settings).some((key) => line.startsWith(`${key}:`)));
  writeFileSync(story, [...lines, ...Object.entries(settings).map(([k, v]) => `${k}: ${v}`), ''].join('\n'));
  const pidFile = join(env.dir, 'pids', `kubelet-${node}.pid`);
  const argv = readFileSync(`/proc/${readFileSync(pidFile, 'utf8').trim()}/cmdline`, 'utf8')
    .split('\0')
    .filter(Boolean);
  if (!argv[0]?.endsWith('kubelet')) throw new Error(`no kubelet of ${node} to restart`);
  const restore = () => respawnKubelet(env, node, argv, own);
  try {
    await respawnKubelet(env, node, argv, story);
  } catch (err) {
    await restore();
    throw err;
  }
  return restore;
}

/** Stops the node's kubelet (if it runs) and starts `argv` with `--config` replaced, in the node's namespaces. */
async function respawnKubelet(env: ClusterEnv, node: string, argv: string[], config: string): Promise<void> {
  const pidFile = join(env.dir, 'pids', `kubelet-${node}.pid`);
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  const netns = env.nodeNetns.get(node);
  const mntns = env.nodeMntns.get(node);
  if (!netns || !mntns) throw new Error(`no network or mount namespace for ${node}`);
  try {
    process.kill(pid, 'SIGTERM');
    await waitExited(pid, 30_000);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
  const restartedAt = Date.now();
  const logFile = join(env.dir, 'logs', `kubelet-${node}.log`);
  const log = openSync(logFile, 'a');
  // nsenter execs the kubelet: the pid stays the kubelet's, as hack/cluster/lib.sh start() records it. Detached (its
  // own session), so it outlives this test process like the cluster's other components.
  const child = spawn(
    'nsenter',
    [
      `--mount=${mntns}`,
      `--net=/run/netns/${netns}`,
      '--',
      ...argv.map((a) => (a.startsWith('--config=') ? `--config=${config}` : a)),
    ],
    { detached: true, stdio: ['ignore', log, log] },
  );
  closeSync(log);
  child.unref();
  writeFileSync(pidFile, `${child.pid}\n`);
  const exited = new Promise<never>((_resolve, reject) =>
    child.once('exit', (code) => {
      const tail = readFileSync(logFile, 'utf8').split('\n').slice(-5).join('\n');
      reject(new Error(`the kubelet of ${node} exited (${code}) with ${config}:\n${tail}`));
    }),
  );
  exited.catch(() => undefined); // observed below; after Ready, a later exit is the cluster's business
  await Promise.race([
    exited,
    watchUntil<V1Node, true>(
      env,
      '/api/v1/nodes',
      { fieldSelector: `metadata.name=${node}` },
      (nodes) => {
        const ready = nodes.get(node)?.status?.conditions?.find((c) => c.type === 'Ready');
        const beat = ready?.lastHeartbeatTime ? new Date(ready.lastHeartbeatTime).getTime() : 0;
        // Heartbeats have second precision: one in a later second than the restart is the new kubelet's.
        return ready?.status === 'True' && beat > Math.floor(restartedAt / 1000) * 1000 ? true : undefined;
      },
      { timeoutMs: 60_000, what: `the restarted kubelet of ${node} reporting Ready` },
    ),
  ]);
}
