// The controller process: informers, queues, the three reconcilers (pods, records, policies), the TTL cleaner, leader
// election, and the health/metrics server, wired once from the parsed configuration.
//
// Concurrency model: informers run on every replica so a standby is warm; work queues and the TTL cleaner run only on
// the leader. Informer handlers only enqueue keys. Each queue runs its reconciler on a few workers and never runs one
// key on two workers at once. Calls to agents and registries run outside reconciles: imports and pushes in
// OperationTrackers, lookups (digests, copies) in a LookupTracker; each re-enqueues the record when it progresses or
// finishes. Losing leadership stops the workers at once and ends the process
// (its Deployment restarts it as a standby), as controller-runtime does, so no half-led state lingers.
import { readFileSync } from 'node:fs';
import { createPrivateKey } from 'node:crypto';
import type { KubernetesObject, V1Lease, V1Namespace, V1Node, V1Pod } from '@kubernetes/client-node';
import {
  agentLeaseSelector,
  isFinalPhase,
  Phases,
  SalvagePolicyResource,
  SalvageRecordResource,
} from '../api/index.ts';
import type { SalvagePolicy, SalvageRecord } from '../api/index.ts';
import { signTransferToken } from '../agentapi/index.ts';
import type { ImportResponse, PushImageResponse, TlsMaterial } from '../agentapi/index.ts';
import { systemClock } from '../runtime/clock.ts';
import type { Clock } from '../runtime/clock.ts';
import type { ControllerConfig } from '../runtime/config/index.ts';
import { startHealthServer } from '../runtime/health-server.ts';
import type { HealthServer } from '../runtime/health-server.ts';
import { createInformer, enqueueHandler, waitForCacheSync } from '../runtime/informer.ts';
import type { Informer } from '../runtime/informer.ts';
import { KubeClient, loadKubeConfig, objectKey, resources } from '../runtime/kube.ts';
import { LeaderElector, leaderIdentity } from '../runtime/leader-election.ts';
import type { Logger } from '../runtime/logging.ts';
import { createRegistry, runtimeMetrics } from '../runtime/metrics.ts';
import { runReconcileLoop } from '../runtime/reconcile-loop.ts';
import type { Reconciler } from '../runtime/reconcile-loop.ts';
import { trimNode, trimPod } from '../runtime/trim.ts';
import { defaultRateLimiter, WorkQueue } from '../runtime/workqueue.ts';
import { AgentDirectory } from './agents/agents.ts';
import { Indexes } from './context.ts';
import type { Caches, ControllerContext } from './context.ts';
import { detectStuckContainers } from './pod/detection.ts';
import { KubeEventRecorder } from './notify/events.ts';
import { LookupTracker } from './lookups.ts';
import { controllerMetrics } from './metrics.ts';
import { Notifier } from './notify/notifier.ts';
import { OperationTracker } from './operations.ts';
import { reconcilePolicy } from './policy/policy-reconciler.ts';
import { reconcilePod } from './pod/pod-reconciler.ts';
import { defaultMachineSettings } from './record/record-machine.ts';
import type { MachineSettings } from './record/record-machine.ts';
import { reconcileRecord } from './record/record-reconciler.ts';
import { SecretReader } from './secrets.ts';
import { startTtlCleaner } from './record/ttl-cleaner.ts';

/** What the controller needs beyond the shared runtime options. */
export interface ControllerSettings {
  config: ControllerConfig;
  /** PEM Ed25519 private key that signs transfer tokens. */
  tokenSigningKey: string;
  tls: TlsMaterial;
  /** Cron expression of the TTL cleaner. */
  ttlSchedule: string;
  machine?: Partial<MachineSettings>;
  log: Logger;
  clock?: Clock;
}

export interface RunningController {
  /** Resolves when the controller has stopped; rejects when it stopped because of an error (e.g. lost leadership). */
  done: Promise<void>;
  stop(): Promise<void>;
  health: HealthServer | undefined;
}

export function readTlsMaterial(config: {
  tlsCaFile?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
}): TlsMaterial {
  if (!config.tlsCaFile || !config.tlsCertFile || !config.tlsKeyFile) {
    throw new Error('--tls-ca-file, --tls-cert-file and --tls-key-file are required: agents only speak mTLS');
  }
  return {
    ca: readFileSync(config.tlsCaFile),
    cert: readFileSync(config.tlsCertFile),
    key: readFileSync(config.tlsKeyFile),
  };
}

export async function startController(settings: ControllerSettings): Promise<RunningController> {
  const { config, log } = settings;
  const clock = settings.clock ?? systemClock;
  const registry = createRegistry();
  const runtime = runtimeMetrics(registry);
  const kube = new KubeClient(loadKubeConfig(config.kubeconfig), {
    fieldManager: 'tote-controller',
    observeRequest: (sample) => runtime.observeKubeRequest(sample),
  });
  const metrics = controllerMetrics(registry);
  const signingKey = createPrivateKey(settings.tokenSigningKey);

  const informerOptions = { clock, logger: log, metrics: runtime, resyncPeriodMs: config.syncPeriodMs };
  const caches: Caches = {
    pods: createInformer<V1Pod>(kube, resources.pods, {
      ...informerOptions,
      transform: trimPod,
      indexers: { [Indexes.podsByNode]: (p) => (p.spec?.nodeName ? [p.spec.nodeName] : []) },
    }),
    nodes: createInformer<V1Node>(kube, resources.nodes, { ...informerOptions, transform: trimNode }),
    namespaces: createInformer<V1Namespace>(kube, resources.namespaces, informerOptions),
    policies: createInformer<SalvagePolicy & KubernetesObject>(kube, SalvagePolicyResource, informerOptions),
    records: createInformer<SalvageRecord & KubernetesObject>(kube, SalvageRecordResource, {
      ...informerOptions,
      indexers: {
        [Indexes.recordsByPolicy]: (r) => (r.spec.policyRef?.name ? [r.spec.policyRef.name] : []),
        [Indexes.recordsByNode]: (r) => [r.spec.targetNode],
      },
    }),
    agentLeases: createInformer<V1Lease>(kube, resources.leases, {
      ...informerOptions,
      name: 'agent-leases',
      namespace: config.agentNamespace,
      labelSelector: agentLeaseSelector,
    }),
  };
  const allInformers = Object.values(caches) as Informer<KubernetesObject>[];

  const queue = (name: string) =>
    new WorkQueue({
      name,
      clock,
      rateLimiter: defaultRateLimiter({
        clock,
        baseDelayMs: config.requeueBaseDelayMs,
        maxDelayMs: config.requeueMaxDelayMs,
        qps: config.requeueQps,
        burst: config.requeueBurst,
      }),
      metrics: runtime.queueMetrics(name),
    });
  const queues = { pods: queue('pods'), records: queue('records'), policies: queue('policies') };
  for (const q of Object.values(queues)) runtime.observeQueue(q);

  const secrets = new SecretReader(kube, clock);
  const c: ControllerContext = {
    kube,
    clock,
    log,
    metrics,
    caches,
    agents: new AgentDirectory({
      leases: caches.agentLeases,
      tls: settings.tls,
      clock,
      callTimeoutMs: config.agentRpcTimeoutMs,
    }),
    imports: new OperationTracker<ImportResponse>({ notify: (k) => queues.records.add(k), clock }),
    pushes: new OperationTracker<PushImageResponse>({ notify: (k) => queues.records.add(k), clock }),
    lookups: new LookupTracker({ notify: (k) => queues.records.add(k), clock }),
    events: new KubeEventRecorder(kube, { clock, log, instance: config.podName ?? 'tote-controller' }),
    secrets,
    notifier: new Notifier({ secrets, log, metrics }),
    signToken: (claims) => {
      const now = clock.now();
      return signTransferToken(signingKey, {
        ...claims,
        issuedAt: new Date(now),
        expiresAt: new Date(now + 30 * 60_000),
      });
    },
    machine: { ...defaultMachineSettings, ...settings.machine },
    enqueueRecord: (key) => queues.records.add(key),
    // Record changes reach their policy's counters at most every 5 s: a burst of 200 records changing phase makes a
    // handful of policy status writes, not one a second for its whole length.
    enqueuePolicy: (name) => queues.policies.addAfter(name, 5_000),
  };
  metrics.observeAgentLoad(() => c.agents.load());
  wireHandlers(c, caches, queues, config.namespaces);

  for (const informer of allInformers) informer.start();

  let health: HealthServer | undefined;
  if (config.healthProbeBindAddress) {
    health = await startHealthServer({
      address: config.healthProbeBindAddress,
      readiness: {
        caches: () => allInformers.every((i) => i.hasSynced()) || 'caches not synced',
      },
      ...(config.metricsBindAddress ? {} : { registry }),
      logger: log,
    });
  }
  let metricsServer: HealthServer | undefined;
  if (config.metricsBindAddress) {
    metricsServer = await startHealthServer({ address: config.metricsBindAddress, registry, logger: log });
  }

  const stopLeading = new AbortController();
  let stopping = false;
  let resolveDone: () => void = () => {};
  let rejectDone: (err: Error) => void = () => {};
  const done = new Promise<void>((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });

  const lead = async (signal: AbortSignal) => {
    try {
      await waitForCacheSync(allInformers, { signal, clock });
    } catch {
      return;
    }
    log.info('caches synced; reconciling', { leader: true });
    const ttl = startTtlCleaner(c, settings.ttlSchedule);
    const loops = [
      runReconcileLoop({
        name: 'pods',
        queue: queues.pods,
        reconcile: bind(c, reconcilePod),
        workers: config.maxConcurrentReconciles,
        logger: log,
        metrics: runtime,
      }),
      runReconcileLoop({
        name: 'records',
        queue: queues.records,
        reconcile: bind(c, reconcileRecord),
        workers: config.maxConcurrentReconciles,
        logger: log,
        metrics: runtime,
      }),
      runReconcileLoop({
        name: 'policies',
        queue: queues.policies,
        reconcile: bind(c, reconcilePolicy),
        workers: 1,
        logger: log,
        metrics: runtime,
      }),
    ];
    // Everything already cached is work: enqueue it once (later changes arrive through the handlers).
    enqueueAll(c, caches, queues);
    signal.addEventListener('abort', () => void ttl.stop(), { once: true });
    await Promise.all(loops);
  };

  const shutdown = async (drain: boolean) => {
    await Promise.race([
      Promise.all(Object.values(queues).map((q) => q.shutdown({ drain }))),
      new Promise((resolve) => setTimeout(resolve, config.gracefulShutdownTimeoutMs).unref()),
    ]);
    c.imports.cancelAll();
    c.pushes.cancelAll();
    c.lookups.cancelAll();
    await c.notifier.flush();
    c.agents.close();
    await Promise.all(allInformers.map((i) => i.stop()));
    await health?.close();
    await metricsServer?.close();
  };

  let elector: LeaderElector | undefined;
  if (config.leaderElect) {
    elector = new LeaderElector({
      client: kube,
      namespace: config.leaderElectionNamespace,
      name: config.leaderElectionId,
      identity: leaderIdentity(config.podName),
      leaseDurationMs: config.leaseDurationMs,
      renewDeadlineMs: config.renewDeadlineMs,
      retryPeriodMs: config.retryPeriodMs,
      clock,
      logger: log,
      metrics: runtime,
      onStartedLeading: (signal) => {
        log.info('became leader');
        void lead(signal);
      },
      onStoppedLeading: () => {
        if (stopping) return;
        log.error('leadership lost; stopping so a standby can take over');
        void shutdown(false).then(() => rejectDone(new Error('leader election lost')));
      },
      onNewLeader: (identity) => log.info('leader observed', { identity }),
    });
    health?.addCheck('readiness', 'leader-election', () => elector?.healthy(config.leaseDurationMs) ?? true);
    void elector.start();
  } else {
    void lead(stopLeading.signal);
  }

  return {
    done,
    health,
    stop: async () => {
      if (stopping) return done;
      stopping = true;
      stopLeading.abort();
      await shutdown(true);
      await elector?.stop();
      resolveDone();
      return done;
    },
  };
}

const bind =
  (
    c: ControllerContext,
    fn: (c: ControllerContext, key: string, ctx: Parameters<Reconciler>[1]) => ReturnType<Reconciler>,
  ): Reconciler =>
  (key, ctx) =>
    fn(c, key, ctx);

type Queues = { pods: WorkQueue; records: WorkQueue; policies: WorkQueue };

/** Informer events → keys. Each handler is cheap and decides nothing beyond "could this matter". */
function wireHandlers(c: ControllerContext, caches: Caches, queues: Queues, namespaces: readonly string[]): void {
  const watched = (ns: string | undefined) => namespaces.length === 0 || (ns !== undefined && namespaces.includes(ns));
  const enqueueStuckPod = (pod: V1Pod) => {
    if (watched(pod.metadata?.namespace) && detectStuckContainers(pod).length > 0) queues.pods.add(objectKey(pod));
  };
  caches.pods.addEventHandler({ add: enqueueStuckPod, update: (_old, pod) => enqueueStuckPod(pod) });

  caches.records.addEventHandler(
    enqueueHandler<SalvageRecord & KubernetesObject>(
      (key) => queues.records.add(key),
      (r) => {
        if (r.spec.policyRef?.name) c.enqueuePolicy(r.spec.policyRef.name);
        return [objectKey(r)];
      },
    ),
  );

  const stuckPodsEverywhere = () => {
    for (const pod of caches.pods.list()) enqueueStuckPod(pod);
  };
  caches.policies.addEventHandler(
    enqueueHandler<SalvagePolicy & KubernetesObject>(
      (name) => queues.policies.add(name),
      (p) => {
        stuckPodsEverywhere();
        return [p.metadata?.name ?? ''];
      },
    ),
  );

  caches.namespaces.addEventHandler({
    update: (old, ns) => {
      // Scope depends on labels (policy selectors) and annotations (the tote.dev/allow opt-in): either may matter.
      const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
      if (same(old.metadata?.labels, ns.metadata?.labels) && same(old.metadata?.annotations, ns.metadata?.annotations))
        return;
      for (const pod of caches.pods.list(ns.metadata?.name)) enqueueStuckPod(pod);
    },
  });

  const activeRecordsOn = (node: string) => {
    for (const r of caches.records.byIndex(Indexes.recordsByNode, node)) {
      if (!isFinalPhase(r.status?.phase)) queues.records.add(objectKey(r));
    }
  };
  caches.nodes.addEventHandler({
    add: (n) => activeRecordsOn(n.metadata?.name ?? ''),
    delete: (n) => activeRecordsOn(n.metadata?.name ?? ''),
  });

  // An agent appearing or vanishing changes where images can come from: records still looking for a source re-run.
  const agentsChanged = () => {
    c.metrics.agentsAlive.set(c.agents.alive().size);
    for (const r of caches.records.list()) {
      const phase = r.status?.phase;
      if (phase === Phases.Resolving || phase === Phases.Locating) queues.records.add(objectKey(r));
    }
  };
  caches.agentLeases.addEventHandler({ add: agentsChanged, delete: agentsChanged });
}

function enqueueAll(c: ControllerContext, caches: Caches, queues: Queues): void {
  for (const pod of caches.pods.list()) if (detectStuckContainers(pod).length > 0) queues.pods.add(objectKey(pod));
  for (const r of caches.records.list()) queues.records.add(objectKey(r));
  for (const p of caches.policies.list()) queues.policies.add(p.metadata?.name ?? '');
  c.metrics.agentsAlive.set(c.agents.alive().size);
}
