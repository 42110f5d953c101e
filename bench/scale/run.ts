// Scale benchmark (`make bench-scale`): the controller (a real process, shipped RBAC) against kwok's simulated nodes.
//   1. 500 kwok nodes, each with a real agent server over an in-memory containerd (agents.ts), announced by Leases;
//   2. 4,800 running pods spread over them; the controller watches them all → RSS per pod watched, and the API
//      requests it makes per second while nothing fails (idle_api_rps);
//   3. 200 pods failing at once (kwok reports ErrImagePull) across 20 images, some pairs on the same node → exactly one
//      SalvageRecord per (digest, node), every one finished; reconcile latency, queue depth, API requests per second.
// The controller's API requests are counted by the API server itself: a FlowSchema matching only the controller's
// ServiceAccount, read from apiserver_flowcontrol_dispatched_requests_total; api_requests_per_record is what the burst
// cost from its start to the end of the quiet minute after it, less the idle rate, per record (issue 21: at most 5).
// Settings: TOTE_BENCH_NODES (500), TOTE_BENCH_PODS (5000), TOTE_BENCH_FAILING (200), TOTE_BENCH_IMAGES (20),
// TOTE_BENCH_IDLE_SECONDS (60), TOTE_BENCH_MAX_TRANSFERS (the policy's maxConcurrentTransfers, 64), TOTE_BENCH_REPORT
// (the result's name, scale).
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'node:https';
import type { AgentOptions, RequestOptions } from 'node:https';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import type { KubernetesObject } from '@kubernetes/client-node';
import type { SalvageRecord } from '../../src/api/index.ts';
import { ensureCluster, kubeConfig, kubectl, repoRoot } from '../../test/support/cluster.ts';
import type { ClusterEnv } from '../../test/support/cluster.ts';
import {
  prepareTote,
  runningProcess,
  startController,
  stopProcess,
  stopTote,
  toteNamespace,
} from '../../test/support/tote.ts';
import { watchUntil } from '../../test/support/wait.ts';
import { logger, percentile, processMemory, report, seconds } from '../lib/report.ts';
import { spreadOf } from '../lib/spread.ts';
import type { AgentsConfig } from './agents.ts';

const run = promisify(execFile);
const log = logger('bench-scale');
const nodeCount = Number(process.env.TOTE_BENCH_NODES ?? 500);
const podCount = Number(process.env.TOTE_BENCH_PODS ?? 5000);
const failingCount = Number(process.env.TOTE_BENCH_FAILING ?? 200);
const imageCount = Number(process.env.TOTE_BENCH_IMAGES ?? 20);
const idleSeconds = Number(process.env.TOTE_BENCH_IDLE_SECONDS ?? 60);
const maxConcurrentTransfers = Number(process.env.TOTE_BENCH_MAX_TRANSFERS ?? 64);
// `make bench-fanout` runs this with one image on one node and a failing pod on every other node, as fanout-wide.
const reportName = process.env.TOTE_BENCH_REPORT ?? 'scale';
// Fresh namespaces per run: an earlier run's may still be terminating.
const runId = Date.now().toString(36);
const namespaces = Array.from({ length: 10 }, (_, i) => `bench-scale-${runId}-${i}`);
const failNamespace = `bench-scale-${runId}-fail`;
const flowSchema = 'tote-bench-controller';
const kwokBin = join(
  process.env.TOTE_CACHE ?? join(process.env.HOME ?? '/root', '.cache/tote'),
  'bin/k8s-v1.36.3/kwok',
);
const nodeName = (i: number) => `kwok-${String(i).padStart(3, '0')}`;
const node = join(repoRoot, 'node_modules/.bin/node');

// --- the API server, as admin --------------------------------------------------------------------------------------

let connection: Promise<{ server: string; options: RequestOptions }> | undefined;

/** One admin request to the API server (keep-alive, so thousands of creates do not each pay a TLS handshake). */
async function api(env: ClusterEnv, method: string, path: string, body?: unknown): Promise<unknown> {
  connection ??= (async () => {
    const kc = kubeConfig(env);
    const options: RequestOptions = {};
    await kc.applyToHTTPSOptions(options);
    options.agent = new Agent({ ...options, keepAlive: true, maxSockets: 32 } as AgentOptions);
    return { server: kc.getCurrentCluster()?.server ?? '', options };
  })();
  const { server, options } = await connection;
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(server + path),
      { ...options, method, headers: { ...options.headers, 'content-type': 'application/json' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const code = res.statusCode ?? 500;
          if (code >= 300 && !(method === 'POST' && code === 409))
            reject(new Error(`${method} ${path}: HTTP ${code} ${text.slice(0, 300)}`));
          else resolve(text.startsWith('{') ? JSON.parse(text) : text);
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** Runs `fn` over `items`, `width` at a time. */
async function pool<T>(items: T[], width: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

async function apiserverMetrics(env: ClusterEnv): Promise<string> {
  return (await api(env, 'GET', '/metrics')) as string;
}

/** Requests the API server dispatched for the controller's FlowSchema so far. */
async function controllerRequests(env: ClusterEnv): Promise<number> {
  const text = await apiserverMetrics(env);
  let sum = 0;
  for (const line of text.split('\n')) {
    if (
      line.startsWith('apiserver_flowcontrol_dispatched_requests_total{') &&
      line.includes(`flow_schema="${flowSchema}"`)
    )
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

// --- the controller's /metrics ---------------------------------------------------------------------------------------

/** The controller's API requests so far by "VERB <label>" in one of its request metrics. */
function requestCounts(text: string, metric: string, label: string): Map<string, number> {
  const counts = new Map<string, number>();
  const pattern = new RegExp(`^${metric}\\{verb="([A-Z]+)",${label}="([^"]+)"\\} (\\S+)$`);
  for (const line of text.split('\n')) {
    const m = pattern.exec(line);
    if (m) counts.set(`${m[1]} ${m[2]}`, Number(m[3]));
  }
  return counts;
}

interface Histogram {
  buckets: Map<number, number>;
  count: number;
  sum: number;
}

function parseHistogram(text: string, name: string, labelFilter = ''): Histogram {
  const h: Histogram = { buckets: new Map(), count: 0, sum: 0 };
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || !line.includes(labelFilter)) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (line.startsWith(`${name}_bucket{`)) {
      const le = /le="([^"]+)"/.exec(line)?.[1] ?? '';
      const bound = le === '+Inf' ? Infinity : Number(le);
      h.buckets.set(bound, (h.buckets.get(bound) ?? 0) + value);
    } else if (line.startsWith(`${name}_count`)) h.count += value;
    else if (line.startsWith(`${name}_sum`)) h.sum += value;
  }
  return h;
}

function diffHistogram(after: Histogram, before: Histogram): Histogram {
  const buckets = new Map<number, number>();
  for (const [le, v] of after.buckets) buckets.set(le, v - (before.buckets.get(le) ?? 0));
  return { buckets, count: after.count - before.count, sum: after.sum - before.sum };
}

/** Prometheus' histogram_quantile: linear interpolation inside the bucket that holds the quantile. */
function quantile(h: Histogram, q: number): number {
  const bounds = [...h.buckets.keys()].sort((a, b) => a - b);
  const total = h.buckets.get(Infinity) ?? h.count;
  if (total === 0) return Number.NaN;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const le of bounds) {
    const cumulative = h.buckets.get(le) ?? 0;
    if (cumulative >= rank) {
      if (le === Infinity) return lower;
      return lower + ((le - lower) * (rank - below)) / Math.max(1, cumulative - below);
    }
    lower = le;
    below = cumulative;
  }
  return lower;
}

function gauges(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    out.set(line.slice(name.length, line.lastIndexOf(' ')), Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return out;
}

// --- images ---------------------------------------------------------------------------------------------------------

function makeImages(holdersOf: (i: number) => string[]): AgentsConfig['images'] {
  const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  return Array.from({ length: imageCount }, (_, i) => {
    const layers = [randomBytes(64 * 1024), randomBytes(32 * 1024)];
    const config = Buffer.from(
      JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map(sha) } }),
    );
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
        layers: layers.map((l) => ({
          mediaType: 'application/vnd.oci.image.layer.v1.tar',
          digest: sha(l),
          size: l.length,
        })),
      }),
    );
    return {
      name: `bench.local/scale/app-${i}:v1`,
      target: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha(manifest), size: manifest.length },
      blobs: [...layers, config, manifest].map((b) => ({ data: b.toString('base64') })),
      holders: holdersOf(i),
    };
  });
}

// --- setup ------------------------------------------------------------------------------------------------------------

const children: ChildProcess[] = [];

function startChild(name: string, command: string, args: string[], logFile: string): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const out = createWriteStream(logFile, { flags: 'a' });
  child.stderr?.pipe(out);
  child.on('exit', (code, signal) => log(`${name} exited (${code ?? signal})`));
  return child;
}

async function waitForLine(child: ChildProcess, prefix: string, timeoutMs: number): Promise<string> {
  const lines = createInterface({ input: child.stdout! });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${prefix}" within ${timeoutMs} ms`)), timeoutMs);
    child.once('exit', (code) => reject(new Error(`exited (${code}) before "${prefix}"`)));
    lines.on('line', (line) => {
      if (line.startsWith(prefix)) {
        clearTimeout(timer);
        resolve(line);
      }
    });
  });
}

function pod(namespace: string, name: string, nodeName: string, image: string, failing: boolean): KubernetesObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels: { app: 'bench-scale', ...(failing ? { 'tote-bench/fail': 'true' } : {}) } },
    spec: {
      nodeName,
      tolerations: [
        { key: 'kwok.x-k8s.io/node', operator: 'Exists', effect: 'NoSchedule' },
        // On a loaded machine kwok renews 500 node Leases late now and then; without these the node lifecycle
        // controller would evict the pods of a node it briefly thinks unreachable.
        { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute' },
        { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute' },
      ],
      containers: [{ name: 'app', image, imagePullPolicy: 'IfNotPresent' }],
    },
  } as KubernetesObject;
}

async function countPods(env: ClusterEnv, predicate: (p: { status?: { phase?: string } }) => boolean) {
  let n = 0;
  for (const ns of [...namespaces, failNamespace]) {
    const list = (await api(env, 'GET', `/api/v1/namespaces/${ns}/pods?limit=10000`)) as {
      items: { status?: { phase?: string } }[];
    };
    n += list.items.filter(predicate).length;
  }
  return n;
}

/** Polls until `check` returns true (the cluster-wide counts here have no single watch to follow). */
async function until(what: string, timeoutMs: number, check: () => Promise<boolean>, everyMs = 2000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

// --- the run ------------------------------------------------------------------------------------------------------------

const env = await ensureCluster();
const work = join(env.dir, 'bench-scale');
mkdirSync(work, { recursive: true });
const nodes = Array.from({ length: nodeCount }, (_, i) => nodeName(i));
// Sources: the last `imageCount` nodes each hold one image; targets: the first nodes.
const holderOf = (i: number) => nodes[nodes.length - imageCount + i] ?? '';
const targetNodes = nodes.slice(0, nodes.length - imageCount);

log(`cluster ${env.dir}: stopping other tote processes so only this controller and the simulated agents count`);
await stopTote(env);
const paths = await prepareTote(env);

try {
  const certs = join(work, 'certs');
  const sameCa =
    existsSync(join(certs, 'ca.crt')) &&
    readFileSync(join(certs, 'ca.crt')).equals(readFileSync(join(paths.certs, 'ca.crt')));
  const missing = nodes.filter((n) => !existsSync(join(certs, 'agents', `${n}.crt`)));
  let t = performance.now();
  if (!sameCa || missing.length > 0) {
    log(`certificates for ${nodeCount} simulated nodes (hack/certs/make-certs.sh; kept for the next run)`);
    await run(
      join(repoRoot, 'hack/certs/make-certs.sh'),
      [
        '--out',
        certs,
        '--ca-cert',
        join(paths.certs, 'ca.crt'),
        '--ca-key',
        join(paths.certs, 'ca.key'),
        '--nodes',
        nodes.join(' '),
      ],
      { env: { ...process.env, TOTE_KUBECTL: env.kubectl, KUBECONFIG: env.kubeconfig }, maxBuffer: 1 << 24 },
    );
    log(`certificates made in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }

  // A FlowSchema that matches only the controller's ServiceAccount: the API server then counts its requests.
  await api(env, 'POST', '/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas', {
    apiVersion: 'flowcontrol.apiserver.k8s.io/v1',
    kind: 'FlowSchema',
    metadata: { name: flowSchema },
    spec: {
      matchingPrecedence: 50,
      priorityLevelConfiguration: { name: 'workload-high' },
      distinguisherMethod: { type: 'ByUser' },
      rules: [
        {
          subjects: [{ kind: 'ServiceAccount', serviceAccount: { name: 'tote-controller', namespace: toteNamespace } }],
          resourceRules: [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'], namespaces: ['*'], clusterScope: true }],
          nonResourceRules: [{ verbs: ['*'], nonResourceURLs: ['*'] }],
        },
      ],
    },
  });

  log('starting kwok');
  const kwok = startChild(
    'kwok',
    kwokBin,
    [
      `--kubeconfig=${env.kubeconfig}`,
      `--config=${join(repoRoot, 'bench/scale/stages.yaml')}`,
      '--manage-all-nodes=false',
      '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
      '--manage-nodes-with-label-selector=',
      '--manage-single-node=',
      '--cidr=10.244.0.0/16',
      '--node-lease-duration-seconds=40',
    ],
    join(work, 'kwok.log'),
  );
  kwok.stdout?.resume();

  log(`creating ${nodeCount} nodes`);
  t = performance.now();
  await pool(nodes, 20, (name) =>
    api(env, 'POST', '/api/v1/nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name,
        annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
        labels: {
          'kubernetes.io/hostname': name,
          'kubernetes.io/os': 'linux',
          'kubernetes.io/arch': 'amd64',
          type: 'kwok',
        },
      },
      spec: { taints: [{ key: 'kwok.x-k8s.io/node', value: 'fake', effect: 'NoSchedule' }] },
    }),
  );
  await until('kwok nodes Ready', 300_000, async () => {
    const list = (await api(env, 'GET', '/api/v1/nodes?labelSelector=type%3Dkwok')) as {
      items: { status?: { conditions?: { type: string; status: string }[] } }[];
    };
    return (
      list.items.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).length >=
      nodeCount
    );
  });
  log(`nodes Ready in ${((performance.now() - t) / 1000).toFixed(1)} s`);

  log(`starting ${nodeCount} agent servers over in-memory containerd`);
  const images = makeImages((i) => [holderOf(i)]);
  const agentsConfig: AgentsConfig = {
    kubeconfig: env.kubeconfig,
    certs,
    caFile: join(paths.certs, 'ca.crt'),
    tokenPublicKeyFile: join(paths.certs, 'signing/public.pem'),
    namespace: toteNamespace,
    nodes,
    images,
  };
  writeFileSync(join(work, 'agents.json'), JSON.stringify(agentsConfig));
  t = performance.now();
  const agents = startChild(
    'agents',
    node,
    [join(repoRoot, 'bench/scale/agents.ts'), join(work, 'agents.json')],
    join(work, 'agents.log'),
  );
  await waitForLine(agents, 'ready', 600_000);
  log(`agents ready in ${((performance.now() - t) / 1000).toFixed(1)} s (pid ${agents.pid})`);

  for (const ns of [...namespaces, failNamespace]) {
    await api(env, 'POST', '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: ns, labels: { 'tote-bench/scale': 'true' } },
    });
  }
  await api(env, 'POST', '/apis/tote.dev/v1alpha1/salvagepolicies', {
    apiVersion: 'tote.dev/v1alpha1',
    kind: 'SalvagePolicy',
    metadata: { name: 'bench-scale' },
    spec: {
      namespaceSelector: { matchLabels: { 'tote-bench/scale': 'true' } },
      limits: { maxConcurrentTransfers },
    },
  });

  const existing = runningProcess(paths, 'controller-0');
  if (existing) await stopProcess(paths, existing);
  const controller = await startController(env, paths);
  const baseline = processMemory(controller.pid);
  log(`controller pid ${controller.pid}: ${baseline.rss_mb} MB RSS with no bench pods`);
  const memSamples: number[] = [];
  const depthMax = new Map<string, number>();
  // What the V8 heap and external memory held when RSS was at its highest, to explain the RSS.
  let atPeak = { rss_mb: 0, heap_used_mb: 0, heap_total_mb: 0, external_mb: 0 };
  const metric = (text: string, name: string) =>
    Number(/^(\S+) (\S+)$/m.exec(text.split('\n').find((l) => l.startsWith(`${name} `)) ?? '')?.[2] ?? 0) / 2 ** 20;
  const sampler = setInterval(() => {
    let rss = 0;
    try {
      rss = processMemory(controller.pid).rss_mb;
      memSamples.push(rss);
    } catch {
      // the process is gone; the run will fail on its own
    }
    void fetch(`${controller.metricsUrl}/metrics`)
      .then((r) => r.text())
      .then((text) => {
        for (const [labels, v] of gauges(text, 'tote_workqueue_depth'))
          depthMax.set(labels, Math.max(v, depthMax.get(labels) ?? 0));
        if (rss >= atPeak.rss_mb)
          atPeak = {
            rss_mb: rss,
            heap_used_mb: Number(metric(text, 'nodejs_heap_size_used_bytes').toFixed(1)),
            heap_total_mb: Number(metric(text, 'nodejs_heap_size_total_bytes').toFixed(1)),
            external_mb: Number(metric(text, 'nodejs_external_memory_bytes').toFixed(1)),
          };
      })
      .catch(() => undefined);
  }, 500);

  const running = podCount - failingCount;
  log(`creating ${running} running pods over ${targetNodes.length} nodes in ${namespaces.length} namespaces`);
  t = performance.now();
  const healthy = Array.from({ length: running }, (_, i) =>
    pod(
      namespaces[i % namespaces.length] ?? '',
      `run-${i}`,
      nodes[i % nodes.length] ?? '',
      'bench.local/scale/ok:v1',
      false,
    ),
  );
  await pool(healthy, 16, (p) => api(env, 'POST', `/api/v1/namespaces/${p.metadata?.namespace}/pods`, p));
  log(`created in ${((performance.now() - t) / 1000).toFixed(1)} s; waiting for kwok to run them`);
  await until(
    `${running} pods Running`,
    900_000,
    async () => (await countPods(env, (p) => p.status?.phase === 'Running')) >= running,
    5000,
  );
  log(`running after ${((performance.now() - t) / 1000).toFixed(1)} s`);

  const settle = async () =>
    until('the controller queue empty', 300_000, async () => {
      const text = await (await fetch(`${controller.metricsUrl}/metrics`)).text();
      return [...gauges(text, 'tote_workqueue_depth').values()].every((v) => v === 0);
    });
  await settle();
  const afterPods = processMemory(controller.pid);
  log(
    `idle: measuring the controller's API requests for ${idleSeconds} s with ${podCount - failingCount} pods watched`,
  );
  const idleStart = await controllerRequests(env);
  const idleT = performance.now();
  await new Promise((resolve) => setTimeout(resolve, idleSeconds * 1000));
  const idleRequests = (await controllerRequests(env)) - idleStart;
  const idleApiRps = idleRequests / ((performance.now() - idleT) / 1000);
  log(`idle: ${idleRequests} requests → ${idleApiRps.toFixed(3)}/s`);

  // --- the failure burst -----------------------------------------------------------------------------------------
  const before = await (await fetch(`${controller.metricsUrl}/metrics`)).text();
  const requestsBefore = await controllerRequests(env);
  const failing: KubernetesObject[] = [];
  const pairs = new Set<string>();
  for (let j = 0; j < failingCount; j++) {
    const image = images[j % imageCount]!;
    // j and j + (failing - 20) land on the same node with the same image: two pods, one record.
    const target = targetNodes[j % Math.max(1, failingCount - imageCount)] ?? '';
    pairs.add(`${image.target.digest}@${target}`);
    failing.push(pod(failNamespace, `fail-${j}`, target, image.name, true));
  }
  log(`failure burst: ${failingCount} pods across ${imageCount} images → ${pairs.size} (digest, node) pairs`);
  const burst = performance.now();
  await pool(failing, 32, (p) => api(env, 'POST', `/api/v1/namespaces/${failNamespace}/pods`, p));
  const finishedPhases = new Set(['Completed', 'Failed', 'NotActionable', 'Skipped']);
  const records = await watchUntil<SalvageRecord & KubernetesObject, SalvageRecord[]>(
    env,
    `/apis/tote.dev/v1alpha1/namespaces/${failNamespace}/salvagerecords`,
    {},
    (objects) => {
      const all = [...objects.values()];
      return all.length >= pairs.size && all.every((r) => finishedPhases.has(r.status?.phase ?? '')) ? all : undefined;
    },
    {
      timeoutMs: 900_000,
      what: `${pairs.size} finished records`,
      describe: (objects) => {
        const phases = new Map<string, number>();
        for (const r of objects.values())
          phases.set(r.status?.phase ?? 'Pending', (phases.get(r.status?.phase ?? 'Pending') ?? 0) + 1);
        return JSON.stringify(Object.fromEntries(phases));
      },
    },
  );
  const burstSeconds = (performance.now() - burst) / 1000;
  const requestsBurst = (await controllerRequests(env)) - requestsBefore;
  const after = await (await fetch(`${controller.metricsUrl}/metrics`)).text();
  log(`all ${records.length} records finished in ${burstSeconds.toFixed(1)} s`);

  // Records keep arriving? Give the controller a moment, then count again: duplicates would show up late.
  await settle();
  const recordList = (await api(env, 'GET', `/apis/tote.dev/v1alpha1/namespaces/${failNamespace}/salvagerecords`)) as {
    items: SalvageRecord[];
  };
  const byPair = new Map<string, number>();
  for (const r of recordList.items) {
    const key = `${r.status?.digest ?? r.spec.digest}@${r.spec.targetNode}`;
    byPair.set(key, (byPair.get(key) ?? 0) + 1);
  }
  const duplicates = [...byPair.values()].reduce((sum, n) => sum + Math.max(0, n - 1), 0);
  const phases: Record<string, number> = {};
  for (const r of recordList.items)
    phases[r.status?.phase ?? 'Pending'] = (phases[r.status?.phase ?? 'Pending'] ?? 0) + 1;
  const unexpected = [...byPair.keys()].filter((k) => !pairs.has(k)).length;

  log(`post-burst steady state: measuring API requests for ${idleSeconds} s`);
  const postStart = await controllerRequests(env);
  const postT = performance.now();
  await new Promise((resolve) => setTimeout(resolve, idleSeconds * 1000));
  const requestsEnd = await controllerRequests(env);
  const postApiRps = (requestsEnd - postStart) / ((performance.now() - postT) / 1000);
  const end = await (await fetch(`${controller.metricsUrl}/metrics`)).text();
  // What the incidents cost the API server: every request from the burst's start to the end of the quiet minute after
  // it (records finished, Events sent, late reconciles done), less what the controller sends anyway (the leader's
  // Lease, idle_api_rps), per record.
  const incidentSeconds = (performance.now() - burst) / 1000;
  const incidentRequests = requestsEnd - requestsBefore - idleApiRps * incidentSeconds;
  clearInterval(sampler);
  const final = processMemory(controller.pid);

  /** A histogram's change over the burst, optionally narrowed to the series containing `labels`. */
  const burstHistogram = (name: string, labels = '') =>
    diffHistogram(parseHistogram(after, name, labels), parseHistogram(before, name, labels));
  const ms = (h: Histogram, q: number) => Number((quantile(h, q) * 1000).toFixed(1));
  const latency = (h: Histogram) => ({ count: h.count, p50_ms: ms(h, 0.5), p99_ms: ms(h, 0.99) });
  const durations = burstHistogram('tote_reconcile_duration_seconds');
  // The same reconciles without their API wait: what the controller itself spends per reconcile.
  const ownDurations = burstHistogram('tote_reconcile_own_duration_seconds');
  const perController: Record<string, ReturnType<typeof latency>> = {};
  for (const controllerName of ['pods', 'records', 'policies']) {
    const h = burstHistogram('tote_reconcile_duration_seconds', `controller="${controllerName}"`);
    if (h.count > 0) perController[controllerName] = latency(h);
  }
  // What the API server made the controller wait, beside what its reconciles took: a reconcile is at least as slow as
  // the write it makes.
  const apiLatency: Record<string, ReturnType<typeof latency>> = {
    all: latency(burstHistogram('tote_kube_request_duration_seconds')),
  };
  for (const verb of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE']) {
    const h = burstHistogram('tote_kube_request_duration_seconds', `verb="${verb}"`);
    if (h.count > 0) apiLatency[verb] = latency(h);
  }
  // The same window by verb and resource, and by verb and status code (a 409 is a write decided on a stale copy), as
  // the controller counted its own requests.
  const countsOver = (metric: string, label: string): Record<string, number> => {
    const out: Record<string, number> = {};
    const from = requestCounts(before, metric, label);
    for (const [kind, n] of [...requestCounts(end, metric, label)].sort((a, b) => b[1] - a[1])) {
      const delta = n - (from.get(kind) ?? 0);
      if (delta > 0) out[kind] = delta;
    }
    return out;
  };
  const requestsByKind = countsOver('tote_kube_request_duration_seconds_count', 'resource');
  const requestsByCode = countsOver('tote_kube_requests_total', 'code');
  const sortedMem = [...memSamples].sort((a, b) => a - b);
  const spreads = images.map((image) =>
    spreadOf(
      recordList.items.filter((r) => r.status?.digest === image.target.digest),
      new Set(image.holders),
    ),
  );
  const deepest = Math.max(0, ...spreads.map((x) => x.tree_depth));
  const result = {
    nodes: nodeCount,
    pods: podCount,
    failing_pods: failingCount,
    images: imageCount,
    records_expected: pairs.size,
    records: recordList.items.length,
    duplicates,
    unexpected_records: unexpected,
    record_phases: phases,
    all_finished: recordList.items.every((r) => finishedPhases.has(r.status?.phase ?? '')),
    burst_seconds: Number(burstSeconds.toFixed(1)),
    // Per image, read from the records (bench/lib/spread.ts): the most any image's first holder was read, the most
    // rounds of copies any image took, and the burst's time per round.
    source_reads: Math.max(0, ...spreads.map((x) => x.source_reads)),
    tree_depth: deepest,
    s_per_doubling: deepest > 0 ? Number((burstSeconds / deepest).toFixed(2)) : null,
    rss_mb: final.hwm_mb,
    rss_baseline_mb: baseline.rss_mb,
    rss_with_pods_mb: afterPods.rss_mb,
    rss_p50_sampled_mb: percentile(sortedMem, 50),
    memory_at_peak: atPeak,
    rss_per_pod_kb: Number((((afterPods.rss_mb - baseline.rss_mb) * 1024) / (podCount - failingCount)).toFixed(2)),
    reconciles: durations.count,
    p50_reconcile_ms: ms(durations, 0.5),
    p99_reconcile_ms: ms(durations, 0.99),
    mean_reconcile_ms: Number(((durations.sum / Math.max(1, durations.count)) * 1000).toFixed(1)),
    reconcile_by_controller: perController,
    api_request_latency_during_burst: apiLatency,
    p50_own_reconcile_ms: ms(ownDurations, 0.5),
    p99_own_reconcile_ms: ms(ownDurations, 0.99),
    queue_depth_max: Object.fromEntries(depthMax),
    api_requests_per_record: Number((incidentRequests / Math.max(1, recordList.items.length)).toFixed(2)),
    incident_api_requests: Math.round(incidentRequests),
    incident_api_requests_by_kind: requestsByKind,
    incident_api_requests_by_code: requestsByCode,
    burst_api_requests: requestsBurst,
    burst_api_rps: Number((requestsBurst / burstSeconds).toFixed(2)),
    idle_api_rps: Number(idleApiRps.toFixed(3)),
    idle_seconds: idleSeconds,
    post_burst_idle_api_rps: Number(postApiRps.toFixed(3)),
    targets: {
      rss_under_150_mb: final.hwm_mb < 150,
      p99_reconcile_under_100_ms: quantile(durations, 0.99) * 1000 < 100,
      no_duplicates: duplicates === 0,
      api_requests_per_record_at_most_5: incidentRequests / Math.max(1, recordList.items.length) <= 5,
      own_p99_reconcile_under_20_ms: quantile(ownDurations, 0.99) * 1000 < 20,
    },
    notes:
      "failing pods are bare pods (no owner), so Restarting leaves them to the kubelet and records end Completed without a pod deletion; p50/p99 interpolated inside the histogram buckets like histogram_quantile; own_reconcile is a reconcile's duration less the API requests it waited for (tote_reconcile_own_duration_seconds); API requests counted by the API server through a FlowSchema matching only the controller ServiceAccount",
    seconds_total: seconds(performance.now()),
  };
  report(reportName, result);
} finally {
  log('cleaning up: namespaces, nodes, policy, flow schema; stopping agents, kwok and the controller');
  const proc = runningProcess(paths, 'controller-0');
  if (proc) await stopProcess(paths, proc);
  for (const child of children.slice().reverse()) {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, 30_000);
        child.once('exit', () => {
          clearTimeout(timer);
          resolve(undefined);
        });
      });
    }
  }
  await kubectl(env, ['delete', 'namespace', ...namespaces, failNamespace, '--wait=false', '--ignore-not-found']);
  await kubectl(env, ['delete', 'salvagepolicy', 'bench-scale', '--ignore-not-found']);
  await kubectl(env, ['delete', 'flowschema', flowSchema, '--ignore-not-found']);
  await kubectl(env, ['delete', 'nodes', '-l', 'type=kwok', '--wait=false']);
}
