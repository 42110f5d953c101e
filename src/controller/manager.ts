// The controller process: informers, queues, the four reconcilers (pods, records, policies, protection), the TTL cleaner, leader
// election, and the health/metrics server, wired once from the parsed configuration.
//
// Concurrency model: informers run on every replica so a standby is warm; work queues and the TTL cleaner run only on
// the leader. Informer handlers only enqueue keys. Each queue runs its reconciler on a few workers and never runs one
// key on two workers at once. Calls to agents and registries run outside reconciles: imports and pushes in
// OperationTrackers, lookups (digests, copies) in a LookupTracker; each re-enqueues the record when it progresses or
// finishes. Losing leadership stops the workers at once and ends the process
// (its Deployment restarts it as a standby), as controller-runtime does, so no half-led state lingers.
//
// This file wires: what is watched and which keys each change enqueues is informers.ts; what reconciles share is
// context.ts; each reconciler lives in its room (pod/, record/, policy/).
import { createPrivateKey } from 'node:crypto';
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import { signTransferToken, transferTokenLifetimeMs } from '../agentapi/index.ts';
import type { ImportResponse, PushImageResponse, RenewableTls } from '../agentapi/index.ts';
import type { SigningAuthority } from './agents/pki.ts';
import { systemClock } from '../runtime/clock.ts';
import type { Clock } from '../runtime/clock.ts';
import type { ControllerConfig } from '../runtime/config/index.ts';
import { startHealthServer } from '../runtime/health-server.ts';
import type { HealthServer } from '../runtime/health-server.ts';
import { waitForCacheSync } from '../runtime/informer.ts';
import type { Informer } from '../runtime/informer.ts';
import { KubeClient, loadKubeConfig } from '../runtime/kube.ts';
import { LeaderElector, leaderIdentity } from '../runtime/leader-election.ts';
import type { Logger } from '../runtime/logging.ts';
import { createRegistry, runtimeMetrics } from '../runtime/metrics.ts';
import type { RuntimeMetrics } from '../runtime/metrics.ts';
import { runReconcileLoop } from '../runtime/reconcile-loop.ts';
import type { Reconciler } from '../runtime/reconcile-loop.ts';
import { defaultRateLimiter, WorkQueue } from '../runtime/workqueue.ts';
import { AgentCertificateSigner } from './agents/certificate-signer.ts';
import { AgentDirectory } from './agents/agents.ts';
import type { Caches, ControllerContext } from './context.ts';
import { createCaches, enqueueAll, wireHandlers } from './informers.ts';
import type { Queues } from './informers.ts';
import { LookupTracker } from './lookups.ts';
import { controllerMetrics } from './metrics.ts';
import type { ControllerMetrics } from './metrics.ts';
import { KubeEventRecorder } from './notify/events.ts';
import { Notifier } from './notify/notifier.ts';
import { OperationTracker } from './operations.ts';
import { reconcilePod } from './pod/pod-reconciler.ts';
import { reconcilePolicy } from './policy/policy-reconciler.ts';
import { reconcileProtection } from './protection/protection-reconciler.ts';
import { PinKeeper } from './protection/pin-keeper.ts';
import { RegistryWatch } from './protection/registry-watch.ts';
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
  tls: RenewableTls;
  /**
   * The CA that signs agent certificates, read at each signing (a rotated CA Secret takes effect without a restart):
   * set, the leader is the signer tote.dev/agent (docs/security.md).
   */
  agentSigner?: () => SigningAuthority;
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

export async function startController(settings: ControllerSettings): Promise<RunningController> {
  const { config, log } = settings;
  const clock = settings.clock ?? systemClock;
  const registry = createRegistry();
  const runtime = runtimeMetrics(registry);
  const kube = new KubeClient(loadKubeConfig(config.kubeconfig), {
    fieldManager: 'tote-controller',
    observeRequest: (sample) => runtime.observeKubeRequest(sample),
  });
  const caches = createCaches(kube, config, {
    clock,
    logger: log,
    metrics: runtime,
    resyncPeriodMs: config.syncPeriodMs,
  });
  const allInformers = Object.values(caches) as Informer<KubernetesObject>[];
  const queues = createQueues(config, clock, runtime);
  const c = createContext(settings, { kube, clock, caches, queues, metrics: controllerMetrics(registry) });
  c.metrics.observeAgentLoad(() => c.agents.load());
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

  const lead = (signal: AbortSignal) =>
    Promise.all([
      runAsLeader(c, settings, { caches, queues, runtime, allInformers }, signal),
      signAgentCertificates(c, settings, registry, signal),
    ]);

  const shutdown = async (drain: boolean) => {
    await Promise.race([
      Promise.all(Object.values(queues).map((q) => q.shutdown({ drain }))),
      new Promise((resolve) => setTimeout(resolve, config.gracefulShutdownTimeoutMs).unref()),
    ]);
    c.imports.cancelAll();
    c.pushes.cancelAll();
    c.lookups.cancelAll();
    c.protection.lookups.cancelAll();
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

/** One rate-limited work queue per reconciler. */
function createQueues(config: ControllerConfig, clock: Clock, runtime: RuntimeMetrics): Queues {
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
  const queues = {
    pods: queue('pods'),
    records: queue('records'),
    policies: queue('policies'),
    protection: queue('protection'),
  };
  for (const q of Object.values(queues)) runtime.observeQueue(q);
  return queues;
}

/**
 * How long a pin holds unless a survey renews it (at half-life). Long enough to outlive a controller restart or an
 * outage of hours; short enough that the pin of an image nobody uses any more lapses the same day.
 */
const pinTtlMs = 6 * 3_600_000;

/** What every reconcile shares (context.ts): clients, caches, trackers of work outside reconciles, settings. */
function createContext(
  settings: ControllerSettings,
  parts: { kube: KubeClient; clock: Clock; caches: Caches; queues: Queues; metrics: ControllerMetrics },
): ControllerContext {
  const { config, log } = settings;
  const { kube, clock, caches, queues, metrics } = parts;
  const signingKey = createPrivateKey(settings.tokenSigningKey);
  // Policies may name Secrets in the controller's own namespace only (config/rbac: a Role there, nothing cluster-wide).
  const secrets = new SecretReader(kube, clock, config.podNamespace ?? config.leaderElectionNamespace);
  const agents = new AgentDirectory({
    leases: caches.agentLeases,
    tls: settings.tls,
    clock,
    callTimeoutMs: config.agentRpcTimeoutMs,
  });
  const events = new KubeEventRecorder(kube, { clock, log, instance: config.podName ?? 'tote-controller' });
  return {
    kube,
    clock,
    log,
    metrics,
    caches,
    agents,
    imports: new OperationTracker<ImportResponse>({ notify: (k) => queues.records.add(k), clock }),
    pushes: new OperationTracker<PushImageResponse>({ notify: (k) => queues.records.add(k), clock }),
    lookups: new LookupTracker({ notify: (k) => queues.records.add(k), clock }),
    events,
    secrets,
    notifier: new Notifier({ secrets, log, metrics }),
    signToken: (claims) => {
      const now = clock.now();
      return signTransferToken(signingKey, {
        ...claims,
        issuedAt: new Date(now),
        expiresAt: new Date(now + transferTokenLifetimeMs),
      });
    },
    machine: { ...defaultMachineSettings, ...settings.machine },
    protection: {
      lookups: new LookupTracker({ notify: (k) => queues.protection.add(k), clock }),
      registry: new RegistryWatch({ clock, log }),
      pins: new PinKeeper({
        agents,
        events,
        clock,
        log,
        pinTtlMs,
        nodeUid: (node) => caches.nodes.getByName(node)?.metadata?.uid ?? '',
      }),
      surveys: new Map(),
      surveyPeriodMs: config.protectionSurveyPeriodMs,
    },
    enqueueRecord: (key) => queues.records.add(key),
    enqueueProtection: (name) => queues.protection.add(name),
    // Record changes reach their policy's counters at most every 5 s: a burst of 200 records changing phase makes a
    // handful of policy status writes, not one a second for its whole length.
    enqueuePolicy: (name) => queues.policies.addAfter(name, 5_000),
  };
}

/** The leader signs agent certificates when the controller holds the agent CA (--agent-signer-*-file). */
async function signAgentCertificates(
  c: ControllerContext,
  settings: ControllerSettings,
  registry: Registry,
  signal: AbortSignal,
): Promise<void> {
  if (!settings.agentSigner) return;
  const { config, log } = settings;
  const signer = new AgentCertificateSigner({
    kube: c.kube,
    authority: settings.agentSigner,
    nodes: c.caches.nodes,
    agentNamespace: config.agentNamespace,
    agentServiceAccount: config.agentServiceAccount,
    maxLifetimeMs: config.agentCertificateMaxLifetimeMs,
    clock: c.clock,
    log: log.child({ component: 'agent-certificate-signer' }),
    registry,
  });
  await signer.run(signal);
}

/** The leader's work, once the caches have synced: the TTL cleaner and the reconcile loops, until `signal`. */
async function runAsLeader(
  c: ControllerContext,
  settings: ControllerSettings,
  parts: { caches: Caches; queues: Queues; runtime: RuntimeMetrics; allInformers: Informer<KubernetesObject>[] },
  signal: AbortSignal,
): Promise<void> {
  const { config, log } = settings;
  const { caches, queues, runtime } = parts;
  try {
    await waitForCacheSync(parts.allInformers, { signal, clock: c.clock });
  } catch {
    return;
  }
  log.info('caches synced; reconciling', { leader: true });
  const ttl = startTtlCleaner(c, settings.ttlSchedule);
  const loop = (name: string, queue: WorkQueue, reconcile: Reconciler, workers: number) =>
    runReconcileLoop({ name, queue, reconcile, workers, logger: log, metrics: runtime });
  const loops = [
    loop('pods', queues.pods, bind(c, reconcilePod), config.maxConcurrentReconciles),
    loop('records', queues.records, bind(c, reconcileRecord), config.maxConcurrentReconciles),
    loop('policies', queues.policies, bind(c, reconcilePolicy), 1),
    loop('protection', queues.protection, bind(c, reconcileProtection), 1),
  ];
  // Everything already cached is work: enqueue it once (later changes arrive through the handlers).
  enqueueAll(c, caches, queues);
  signal.addEventListener('abort', () => ttl.stop(), { once: true });
  await Promise.all(loops);
}

const bind =
  (
    c: ControllerContext,
    fn: (c: ControllerContext, key: string, ctx: Parameters<Reconciler>[1]) => ReturnType<Reconciler>,
  ): Reconciler =>
  (key, ctx) =>
    fn(c, key, ctx);
