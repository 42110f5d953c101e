// tote on the local cluster, as processes: one agent per node beside that node's containerd, and the controller. They
// run with what tote ships: the RBAC in config/rbac (through ServiceAccount tokens, never the admin credentials), mTLS
// certificates and transfer keys made by hack/certs/make-certs.sh. Used by `make tote-up`, the demo, integration tests
// and benchmarks.
//
// Processes are started detached with their output in log files and their pids in files, so a `make tote-up` leaves
// them running for later commands and tests reuse them; a test that kills one (chaos) starts it again the same way.
import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { kubectl, repoRoot } from './cluster.ts';
import type { ClusterEnv } from './cluster.ts';

const run = promisify(execFile);
export const toteNamespace = 'tote-system';
const node = join(repoRoot, 'node_modules/.bin/node');
/**
 * What the tote processes run: the TypeScript sources, or with TOTE_ENTRYPOINT another entry point such as the bundle
 * the image ships (dist/tote.mjs, `make build`), which the benchmarks measure.
 */
const cli = process.env.TOTE_ENTRYPOINT ? resolve(process.env.TOTE_ENTRYPOINT) : join(repoRoot, 'src/cmd/tote.ts');

export interface TotePaths {
  dir: string;
  certs: string;
  logs: string;
  controllerKubeconfig: string;
  /** The kubeconfig of the agent on `node`: a token bound to that Node, as the kubelet binds an agent pod's. */
  agentKubeconfig(node: string): string;
}

export interface ToteProcess {
  name: string;
  pid: number;
  logFile: string;
  /** http://127.0.0.1:port of /healthz, /readyz (and /metrics on the controller's probe address). */
  healthUrl: string;
  metricsUrl: string;
}

export function totePaths(env: ClusterEnv): TotePaths {
  const dir = join(env.dir, 'tote');
  return {
    dir,
    certs: join(dir, 'certs'),
    logs: join(dir, 'logs'),
    controllerKubeconfig: join(dir, 'controller.kubeconfig'),
    agentKubeconfig: (node: string) => join(dir, `agent-${node}.kubeconfig`),
  };
}

/** Certificates, the namespace, the shipped RBAC and ServiceAccount kubeconfigs. Idempotent. */
export async function prepareTote(env: ClusterEnv): Promise<TotePaths> {
  const paths = totePaths(env);
  mkdirSync(paths.logs, { recursive: true });
  await run(join(repoRoot, 'hack/certs/make-certs.sh'), ['--out', paths.certs], {
    env: { ...process.env, TOTE_KUBECTL: env.kubectl, KUBECONFIG: env.kubeconfig },
  });
  await must(
    kubectl(env, ['create', 'namespace', toteNamespace, '--dry-run=client', '-o', 'yaml']).then(async (r) =>
      kubectl(env, ['apply', '-f', '-'], { input: r.stdout }),
    ),
  );
  await must(kubectl(env, ['apply', '-k', join(repoRoot, 'config/rbac'), '-n', toteNamespace]));
  const controller = await must(
    kubectl(env, ['create', 'token', 'tote-controller', '-n', toteNamespace, '--duration=48h']),
  );
  writeFileSync(
    paths.controllerKubeconfig,
    serviceAccountKubeconfig(env, 'tote-controller', controller.stdout.trim()),
    {
      mode: 0o600,
    },
  );
  // Each agent's token is bound to its Node, so it carries the node's name as a pod's projected token does; the
  // admission policy config/rbac/agent-lease-policy.yaml lets it write only that node's Lease.
  for (const node of env.nodes) {
    const token = await must(
      kubectl(env, [
        'create',
        'token',
        'tote-agent',
        '-n',
        toteNamespace,
        '--duration=48h',
        '--bound-object-kind=Node',
        `--bound-object-name=${node}`,
      ]),
    );
    writeFileSync(paths.agentKubeconfig(node), serviceAccountKubeconfig(env, 'tote-agent', token.stdout.trim()), {
      mode: 0o600,
    });
  }
  return paths;
}

async function must(result: Promise<{ code: number; stdout: string; stderr: string }>) {
  const r = await result;
  if (r.code !== 0) throw new Error(r.stderr || r.stdout);
  return r;
}

/** A kubeconfig that authenticates as the ServiceAccount: tote runs with the permissions it ships, nothing more. */
export function serviceAccountKubeconfig(env: ClusterEnv, account: string, token: string): string {
  const admin = new KubeConfig();
  admin.loadFromFile(env.kubeconfig);
  const cluster = admin.getCurrentCluster();
  if (!cluster) throw new Error(`${env.kubeconfig} has no current cluster`);
  const ca = cluster.caData ?? (cluster.caFile ? readFileSync(cluster.caFile).toString('base64') : '');
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'local', cluster: { server: cluster.server, 'certificate-authority-data': ca } }],
    users: [{ name: account, user: { token } }],
    contexts: [{ name: account, context: { cluster: 'local', user: account } }],
    'current-context': account,
  });
}

/**
 * `count` distinct free ports on 127.0.0.1: all are held open at once before any is released, since the kernel may
 * hand a port just closed out again (one agent once got the same port for two of its listeners: EADDRINUSE).
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  try {
    return await Promise.all(
      servers.map(
        (server) =>
          new Promise<number>((resolve, reject) => {
            server.on('error', reject);
            server.listen(0, '127.0.0.1', () => {
              const address = server.address();
              if (typeof address === 'object' && address) resolve(address.port);
              else reject(new Error('no port'));
            });
          }),
      ),
    );
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  }
}

const pidFile = (paths: TotePaths, name: string) => join(paths.dir, `${name}.pid`);
const infoFile = (paths: TotePaths, name: string) => join(paths.dir, `${name}.json`);

export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** After a reboot a recorded pid may belong to anything: it is ours only if its command line names our state dir. */
function isOurs(pid: number, paths: TotePaths): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(paths.dir);
  } catch {
    return false;
  }
}

/** The process recorded under `name`, if it still runs. */
export function runningProcess(paths: TotePaths, name: string): ToteProcess | undefined {
  if (!existsSync(infoFile(paths, name))) return undefined;
  const info = JSON.parse(readFileSync(infoFile(paths, name), 'utf8')) as ToteProcess;
  return isRunning(info.pid) && isOurs(info.pid, paths) ? info : undefined;
}

async function startProcess(
  paths: TotePaths,
  name: string,
  args: string[],
  health: number,
  metrics: number,
  env: Readonly<Record<string, string>> = {},
): Promise<ToteProcess> {
  const logFile = join(paths.logs, `${name}.log`);
  const out = openSync(logFile, 'a');
  // TOTE_NODE_FLAGS: Node flags for the tote processes only (the benchmarks pass the manifests' heap limit).
  const nodeFlags = (process.env.TOTE_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  const child = spawn(node, [...nodeFlags, cli, ...args], {
    detached: true,
    stdio: ['ignore', out, out],
    env: { ...process.env, ...env },
  });
  closeSync(out);
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start ${name}`);
  const proc: ToteProcess = {
    name,
    pid: child.pid,
    logFile,
    healthUrl: `http://127.0.0.1:${health}`,
    metricsUrl: `http://127.0.0.1:${metrics}`,
  };
  writeFileSync(pidFile(paths, name), String(child.pid));
  writeFileSync(infoFile(paths, name), JSON.stringify(proc));
  return proc;
}

/** Polls /readyz until 200, the process dies, or the deadline passes (then the log tail explains). */
export async function waitReady(proc: ToteProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (!isRunning(proc.pid)) throw new Error(`${proc.name} exited:\n${tail(proc.logFile)}`);
    try {
      const response = await fetch(`${proc.healthUrl}/readyz`, { signal: AbortSignal.timeout(2000) });
      if (response.ok) return;
      last = await response.text();
    } catch (err) {
      last = String(err);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${proc.name} not ready after ${timeoutMs} ms (${last}):\n${tail(proc.logFile)}`);
}

export function tail(file: string, lines = 30): string {
  if (!existsSync(file)) return '(no log)';
  return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

/** Starts the agent of `nodeName` (unless it runs) and waits until it serves. */
export async function startAgent(env: ClusterEnv, paths: TotePaths, nodeName: string): Promise<ToteProcess> {
  const name = `agent-${nodeName}`;
  const existing = runningProcess(paths, name);
  if (existing) return existing;
  const socket = env.nodeSockets.get(nodeName);
  if (!socket) throw new Error(`no containerd socket for ${nodeName}`);
  const [grpc, health, metrics] = (await freePorts(3)) as [number, number, number];
  const proc = await startProcess(
    paths,
    name,
    [
      'agent',
      `--node-name=${nodeName}`,
      `--listen-address=127.0.0.1:${grpc}`,
      `--advertise-address=127.0.0.1:${grpc}`,
      `--containerd-address=${socket}`,
      // The node's content store, as the DaemonSet mounts it (hack/cluster/up.sh: root = <node dir>/root).
      `--content-dir=${join(dirname(socket), 'root', 'io.containerd.content.v1.content')}`,
      `--kubeconfig=${paths.agentKubeconfig(nodeName)}`,
      `--lease-namespace=${toteNamespace}`,
      // No certificate files: the agent requests its own from the controller, as the DaemonSet's agents do.
      `--tls-ca-file=${join(paths.certs, 'ca.crt')}`,
      `--token-public-key-file=${join(paths.certs, 'signing/public.pem')}`,
      `--health-probe-bind-address=127.0.0.1:${health}`,
      `--metrics-bind-address=127.0.0.1:${metrics}`,
    ],
    health,
    metrics,
  );
  await waitReady(proc);
  return proc;
}

export interface ControllerOptions {
  /** Distinguishes controllers when several run (leader election tests). */
  instance?: string;
  leaderElect?: boolean;
  /** Extra flags, e.g. shorter retry delays for tests. */
  args?: string[];
}

/** Starts a controller (unless one of that instance runs) and waits until its caches are synced. */
export async function startController(
  env: ClusterEnv,
  paths: TotePaths,
  options: ControllerOptions = {},
): Promise<ToteProcess> {
  const name = `controller-${options.instance ?? '0'}`;
  const existing = runningProcess(paths, name);
  if (existing) return existing;
  const [health, metrics] = (await freePorts(2)) as [number, number];
  const proc = await startProcess(
    paths,
    name,
    [
      'controller',
      `--kubeconfig=${paths.controllerKubeconfig}`,
      `--pod-name=${name}`,
      `--pod-namespace=${toteNamespace}`,
      `--agent-namespace=${toteNamespace}`,
      `--leader-elect=${options.leaderElect ?? true}`,
      `--leader-election-namespace=${toteNamespace}`,
      `--tls-ca-file=${join(paths.certs, 'ca.crt')}`,
      `--tls-cert-file=${join(paths.certs, 'controller.crt')}`,
      `--tls-key-file=${join(paths.certs, 'controller.key')}`,
      `--token-signing-key-file=${join(paths.certs, 'signing/private.pem')}`,
      `--agent-signer-cert-file=${join(paths.certs, 'ca.crt')}`,
      `--agent-signer-key-file=${join(paths.certs, 'ca.key')}`,
      `--health-probe-bind-address=127.0.0.1:${health}`,
      `--metrics-bind-address=127.0.0.1:${metrics}`,
      // A test harness: the TTL cleaner runs every 2 s (not every 5 min) so an expired record is pruned within a test.
      '--ttl-schedule=*/2 * * * * *',
      ...(options.args ?? []),
    ],
    health,
    metrics,
    controllerEnvironment(),
  );
  await waitReady(proc);
  return proc;
}

/**
 * TOTE_CONTROLLER_ENV: extra environment for the controller only, as NAME=value words (the benchmarks pass what the
 * Deployment sets, MALLOC_ARENA_MAX=2).
 */
function controllerEnvironment(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const word of (process.env.TOTE_CONTROLLER_ENV ?? '').split(' ').filter(Boolean)) {
    const eq = word.indexOf('=');
    if (eq <= 0) throw new Error(`TOTE_CONTROLLER_ENV: "${word}" is not NAME=value`);
    out[word.slice(0, eq)] = word.slice(eq + 1);
  }
  return out;
}

/** Sends `signal` and waits for the process to exit (SIGKILL after the deadline). */
export async function stopProcess(
  paths: TotePaths,
  proc: ToteProcess,
  signal: NodeJS.Signals = 'SIGTERM',
  timeoutMs = 15_000,
): Promise<void> {
  if (isRunning(proc.pid)) {
    process.kill(proc.pid, signal);
    const deadline = Date.now() + timeoutMs;
    while (isRunning(proc.pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    if (isRunning(proc.pid)) process.kill(proc.pid, 'SIGKILL');
  }
  rmSync(pidFile(paths, proc.name), { force: true });
  rmSync(infoFile(paths, proc.name), { force: true });
}

export interface ToteDeployment {
  paths: TotePaths;
  agents: Map<string, ToteProcess>;
  controller: ToteProcess;
}

/**
 * Everything up: one controller, then agents on every node (an agent is ready once the controller has signed its
 * certificate). Reuses what already runs.
 */
export async function ensureTote(env: ClusterEnv, controller: ControllerOptions = {}): Promise<ToteDeployment> {
  const paths = await prepareTote(env);
  const controllerProcess = await startController(env, paths, controller);
  const agents = new Map<string, ToteProcess>();
  for (const n of env.nodes) agents.set(n, await startAgent(env, paths, n));
  return { paths, agents, controller: controllerProcess };
}

/** Stops every tote process recorded for this cluster. */
export async function stopTote(env: ClusterEnv): Promise<void> {
  const paths = totePaths(env);
  if (!existsSync(paths.dir)) return;
  const names = readdirSync(paths.dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length));
  await Promise.all(
    names.map((name) => {
      const proc = runningProcess(paths, name);
      return proc ? stopProcess(paths, proc) : Promise.resolve();
    }),
  );
}
