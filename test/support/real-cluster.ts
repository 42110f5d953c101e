// The cluster of the stories on real kubelets (test/e2e/real-*.test.ts): real kubelets v1.36.3 in their own network namespaces (TOTE_KUBELET=real, docs/cluster.md),
// in a state directory of its own so it never disturbs the simulated cluster that integration tests share:
// TOTE_REAL_CLUSTER_DIR (default /tmp/tote-real). Its nodes run mixed containerd versions by default (node-a on Debian's
// 1.6, node-b and node-c on 2.x; TOTE_REAL_CONTAINERD overrides), so every story crosses versions one way or the other.
// A missing kubelet, containerd or busybox fails the run (hack/cluster/up.sh builds or refuses); nothing skips.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { ensureCluster, kubectl } from './cluster.ts';
import type { ClusterEnv } from './cluster.ts';
import { acquireLock, useClusterDir } from './chaos.ts';

const run = promisify(execFile);

export const realClusterDir = process.env.TOTE_REAL_CLUSTER_DIR ?? '/tmp/tote-real';
export const realClusterContainerd = process.env.TOTE_REAL_CONTAINERD ?? 'node-a=1.6 node-b=2 node-c=2';

/**
 * Points this process at the real-node cluster and starts it unless it runs (serialised with a lock file: several
 * test files may ask at once). Throws when the directory holds a simulated cluster.
 */
export async function useRealCluster(): Promise<ClusterEnv> {
  useClusterDir(realClusterDir);
  process.env.TOTE_KUBELET = 'real';
  process.env.TOTE_CONTAINERD = realClusterContainerd;
  const release = await acquireLock(`${realClusterDir}.lock`, 30 * 60_000);
  let env: ClusterEnv;
  try {
    env = await ensureCluster();
  } finally {
    release();
  }
  if (env.kubelet !== 'real') throw new Error(`${realClusterDir} holds a ${env.kubelet} cluster, not real kubelets`);
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
