// The local test cluster from TypeScript: start it or reuse a running one (hack/cluster/up.sh is idempotent), read its
// env file, make clients, run kubectl, and create a namespace per test.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { waitForObject } from './wait.ts';

const run = promisify(execFile);
export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** What `make cluster-env` exports, parsed. */
export interface ClusterEnv {
  dir: string;
  kubeconfig: string;
  kubectl: string;
  nodes: string[];
  /** Node name → containerd socket path. */
  nodeSockets: Map<string, string>;
  sourceRegistry: string;
  sourceRegistryConfig: string;
  backupRegistry: string;
  backupRegistryConfig: string;
  backupRegistryUser: string;
  backupRegistryPassword: string;
  caFile: string;
  caKeyFile: string;
  /** Who plays the kubelet: the node simulator or a real kubelet per node (TOTE_KUBELET at cluster-up). */
  kubelet: 'real' | 'simulated';
  /** Node name → containerd version family as started (`2` or `1.6`). */
  nodeContainerd: Map<string, string>;
  /** Node name → network namespace (real nodes only; for `ip netns exec` / `nsenter --net=/run/netns/<name>`). */
  nodeNetns: Map<string, string>;
  /** Node name → the file pinning its mount namespace (real nodes only; `nsenter --mount=<file>`). */
  nodeMntns: Map<string, string>;
  /** Node name → the ctr built with that node's containerd. */
  nodeCtr: Map<string, string>;
  /** Every variable of the env file, for child processes. */
  vars: Record<string, string>;
}

export function clusterDir(): string {
  return process.env.TOTE_CLUSTER_DIR ?? '/tmp/tote-cluster';
}

/** Parses the env file written by hack/cluster/up.sh (lines `export NAME='value'`). */
export function readClusterEnv(file = join(clusterDir(), 'env')): ClusterEnv {
  const vars: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^export ([A-Z_]+)='(.*)'$/.exec(line);
    if (m) vars[m[1]!] = m[2]!;
  }
  const need = (k: string) => {
    const v = vars[k];
    if (v === undefined) throw new Error(`${file} lacks ${k}`);
    return v;
  };
  return {
    dir: need('TOTE_CLUSTER_DIR'),
    kubeconfig: need('KUBECONFIG'),
    kubectl: need('TOTE_KUBECTL'),
    nodes: need('TOTE_NODES').split(' ').filter(Boolean),
    nodeSockets: pairs(need('TOTE_NODE_SOCKETS')),
    sourceRegistry: need('TOTE_SOURCE_REGISTRY'),
    sourceRegistryConfig: need('TOTE_SOURCE_REGISTRY_CONFIG'),
    backupRegistry: need('TOTE_BACKUP_REGISTRY'),
    backupRegistryConfig: need('TOTE_BACKUP_REGISTRY_CONFIG'),
    backupRegistryUser: need('TOTE_BACKUP_REGISTRY_USER'),
    backupRegistryPassword: need('TOTE_BACKUP_REGISTRY_PASSWORD'),
    caFile: need('TOTE_CA_FILE'),
    caKeyFile: need('TOTE_CA_KEY_FILE'),
    kubelet: vars.TOTE_KUBELET === 'real' ? 'real' : 'simulated',
    nodeContainerd: pairs(vars.TOTE_CONTAINERD ?? ''),
    nodeNetns: pairs(vars.TOTE_NODE_NETNS ?? ''),
    nodeMntns: pairs(vars.TOTE_NODE_MNTNS ?? ''),
    nodeCtr: pairs(vars.TOTE_NODE_CTR ?? ''),
    vars,
  };
}

/** `a=x b=y` → Map { a → x, b → y }. */
function pairs(words: string): Map<string, string> {
  return new Map(
    words
      .split(' ')
      .filter(Boolean)
      .map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)] as [string, string]),
  );
}

let started: Promise<ClusterEnv> | undefined;

/** Starts the cluster unless it already runs (cheap when it does), then returns its environment. */
export function ensureCluster(): Promise<ClusterEnv> {
  started ??= run(join(repoRoot, 'hack/cluster/up.sh'), [], { maxBuffer: 16 * 1024 * 1024, timeout: 60 * 60_000 }).then(
    () => readClusterEnv(),
    (err: { stderr?: string; message: string }) => {
      started = undefined;
      throw new Error(`hack/cluster/up.sh failed: ${err.stderr ?? err.message}`);
    },
  );
  return started;
}

/**
 * Applies crds/ to a running cluster and waits until they are served: hack/cluster/up.sh installs them only when it
 * starts a cluster, and a cluster kept from an earlier checkout would otherwise prune the fields the code now writes.
 */
export async function applyCrds(env: ClusterEnv): Promise<void> {
  const dir = process.env.TOTE_CRD_DIR ?? join(repoRoot, 'crds');
  const apply = await kubectl(env, ['apply', '--server-side', '--force-conflicts', '-f', dir]);
  if (apply.code !== 0) throw new Error(`applying ${dir}: ${apply.stderr}`);
  const established = await kubectl(env, ['wait', '--for=condition=Established', '--timeout=30s', '-f', dir]);
  if (established.code !== 0) throw new Error(`waiting for ${dir}: ${established.stderr}`);
}

export function kubeConfig(env: ClusterEnv): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(env.kubeconfig);
  return kc;
}

export interface KubectlResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs the cluster's kubectl (built at the server's version). Never throws on a non-zero exit: check `code`. */
export async function kubectl(
  env: ClusterEnv,
  args: string[],
  options: { input?: string } = {},
): Promise<KubectlResult> {
  return new Promise((resolve) => {
    const child = execFile(
      env.kubectl,
      [`--kubeconfig=${env.kubeconfig}`, ...args],
      { maxBuffer: 16 * 1024 * 1024, timeout: 120_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ stdout, stderr, code });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** `kubectl apply -f FILE` (optionally `--dry-run=server`, in a namespace); for accepting/refusing manifests. */
export function kubectlApply(
  env: ClusterEnv,
  file: string,
  options: { dryRun?: 'server' | 'client'; namespace?: string; serverSide?: boolean } = {},
): Promise<KubectlResult> {
  const args = ['apply', '-f', file];
  if (options.dryRun) args.push(`--dry-run=${options.dryRun}`);
  if (options.namespace) args.push(`--namespace=${options.namespace}`);
  if (options.serverSide) args.push('--server-side');
  return kubectl(env, args);
}

export interface TestNamespace {
  name: string;
  /** Deletes the namespace (does not wait for it to be gone). */
  delete(): Promise<void>;
}

/**
 * A fresh namespace named after the test (`t-<slug>-<random>`), ready for pods: its default ServiceAccount exists.
 * With node:test, pass `t` to have it deleted after the test: `const ns = await testNamespace(env, t)`.
 */
export async function testNamespace(
  env: ClusterEnv,
  t?: { name: string; after?: (fn: () => Promise<void>) => void },
): Promise<TestNamespace> {
  const slug = (t?.name ?? 'test')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 40)
    .replace(/-$/, '');
  const name = `t-${slug}-${randomBytes(3).toString('hex')}`;
  const core = kubeConfig(env).makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name, labels: { 'tote.dev/test': 'true' } } } });
  await waitForObject(env, `/api/v1/namespaces/${name}/serviceaccounts`, 'default', (sa) => sa !== undefined, {
    timeoutMs: 30_000,
    what: `default ServiceAccount in ${name}`,
  });
  const ns: TestNamespace = {
    name,
    delete: async () => {
      await core.deleteNamespace({ name }).catch(() => undefined);
    },
  };
  t?.after?.(() => ns.delete());
  return ns;
}
