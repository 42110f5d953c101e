// Prometheus metrics of the runtime layer, named like controller-runtime's (with the tote_ prefix): reconcile totals by
// result, errors, durations, and work-queue depth/adds/retries/longest-running. Families are created once per Registry
// (runtimeMetrics() memoises), so any number of controllers and queues can share one registry without
// "metric already registered" errors.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RequestSample } from './kube-http.ts';
import type { WorkQueue, WorkQueueMetrics } from './workqueue.ts';

/** The results a reconcile can end with (label values of tote_reconcile_total). */
export const RECONCILE_RESULTS = ['success', 'error', 'requeue', 'requeue_after'] as const;
export type ReconcileResultLabel = (typeof RECONCILE_RESULTS)[number];

/** A new Registry with Node's default process metrics (CPU, memory, event loop lag, GC, handles). */
export function createRegistry(options: { defaultMetrics?: boolean; prefix?: string } = {}): Registry {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: options.prefix ?? '' });
  return registry;
}

/** The runtime's metric families on one registry. */
export interface RuntimeMetrics {
  readonly registry: Registry;
  readonly reconcileTotal: Counter<'controller' | 'result'>;
  readonly reconcileErrors: Counter<'controller'>;
  readonly terminalReconcileErrors: Counter<'controller'>;
  readonly reconcileDuration: Histogram<'controller'>;
  readonly reconcileOwnDuration: Histogram<'controller'>;
  readonly activeWorkers: Gauge<'controller'>;
  readonly queueDepth: Gauge<'name'>;
  readonly queueAdds: Counter<'name'>;
  readonly queueRetries: Counter<'name'>;
  readonly queueLongestRunning: Gauge<'name'>;
  readonly informerRestarts: Counter<'resource'>;
  readonly informerRelists: Counter<'resource'>;
  readonly leaderStatus: Gauge<'name'>;
  readonly kubeRequestDuration: Histogram<'verb' | 'resource'>;
  readonly kubeRequests: Counter<'verb' | 'code'>;
  /** Records one finished API request (KubeHttpOptions.observeRequest). */
  observeKubeRequest(sample: RequestSample): void;
  /** Pre-sets every series of a controller to 0, so dashboards and rate() see it before its first reconcile. */
  registerController(controller: string): void;
  /** Binds a work queue to the tote_workqueue_* families (depth, adds, retries, longest running). */
  queueMetrics(name: string): WorkQueueMetrics;
  /** Lets tote_workqueue_longest_running_processor_seconds read the queue at scrape time. */
  observeQueue(queue: WorkQueue): void;
}

const cache = new WeakMap<Registry, RuntimeMetrics>();

/**
 * The runtime metric families of registry, created on first use. Long only because it declares one family after
 * another, a table read top to bottom; split, the table would be scattered.
 */
export function runtimeMetrics(registry: Registry): RuntimeMetrics {
  const existing = cache.get(registry);
  if (existing) return existing;
  const registers = [registry];
  const queues = new Map<string, WorkQueue>();

  const reconcileTotal = new Counter({
    name: 'tote_reconcile_total',
    help: 'Reconciles per controller and result (success, error, requeue, requeue_after).',
    labelNames: ['controller', 'result'] as const,
    registers,
  });
  const reconcileErrors = new Counter({
    name: 'tote_reconcile_errors_total',
    help: 'Reconciles that ended in an error, per controller.',
    labelNames: ['controller'] as const,
    registers,
  });
  const terminalReconcileErrors = new Counter({
    name: 'tote_terminal_reconcile_errors_total',
    help: 'Reconciles that ended in a terminal (not retried) error, per controller.',
    labelNames: ['controller'] as const,
    registers,
  });
  const reconcileDuration = new Histogram({
    name: 'tote_reconcile_duration_seconds',
    help: 'Time per reconcile, per controller.',
    labelNames: ['controller'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers,
  });
  const reconcileOwnDuration = new Histogram({
    name: 'tote_reconcile_own_duration_seconds',
    help: "Time per reconcile not spent waiting for the API server (the controller's own share), per controller.",
    labelNames: ['controller'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers,
  });
  const activeWorkers = new Gauge({
    name: 'tote_controller_active_workers',
    help: 'Workers currently running a reconcile, per controller.',
    labelNames: ['controller'] as const,
    registers,
  });
  const queueDepth = new Gauge({
    name: 'tote_workqueue_depth',
    help: 'Keys waiting in the work queue.',
    labelNames: ['name'] as const,
    registers,
  });
  const queueAdds = new Counter({
    name: 'tote_workqueue_adds_total',
    help: 'Keys added to the work queue (de-duplicated adds not counted).',
    labelNames: ['name'] as const,
    registers,
  });
  const queueRetries = new Counter({
    name: 'tote_workqueue_retries_total',
    help: 'Rate-limited re-adds to the work queue.',
    labelNames: ['name'] as const,
    registers,
  });
  const queueLongestRunning = new Gauge({
    name: 'tote_workqueue_longest_running_processor_seconds',
    help: 'How long the longest-running in-flight key of the queue has been processed.',
    labelNames: ['name'] as const,
    registers,
    collect() {
      for (const [name, queue] of queues) this.set({ name }, queue.longestRunningMs() / 1000);
    },
  });
  const informerRestarts = new Counter({
    name: 'tote_informer_watch_restarts_total',
    help: 'Watches restarted after an error, per resource.',
    labelNames: ['resource'] as const,
    registers,
  });
  const informerRelists = new Counter({
    name: 'tote_informer_relists_total',
    help: 'Full lists (initial, periodic, after 410 Gone), per resource.',
    labelNames: ['resource'] as const,
    registers,
  });
  const leaderStatus = new Gauge({
    name: 'tote_leader_election_master_status',
    help: '1 while this process holds the named lease, 0 otherwise.',
    labelNames: ['name'] as const,
    registers,
  });

  // Like client-go's rest_client_request_duration_seconds: what the API server costs a reconcile, told apart from
  // the reconcile's own work. Labels are bounded: five verbs, the resources tote touches, status codes.
  const kubeRequestDuration = new Histogram({
    name: 'tote_kube_request_duration_seconds',
    help: 'API server request latency as the client sees it (connection wait included), by verb and resource.',
    labelNames: ['verb', 'resource'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  const kubeRequests = new Counter({
    name: 'tote_kube_requests_total',
    help: 'API server requests by verb and HTTP status code (code="none" when no answer came).',
    labelNames: ['verb', 'code'] as const,
    registers,
  });

  const metrics: RuntimeMetrics = {
    registry,
    reconcileTotal,
    reconcileErrors,
    terminalReconcileErrors,
    reconcileDuration,
    reconcileOwnDuration,
    activeWorkers,
    queueDepth,
    queueAdds,
    queueRetries,
    queueLongestRunning,
    informerRestarts,
    informerRelists,
    leaderStatus,
    kubeRequestDuration,
    kubeRequests,
    observeKubeRequest({ method, resource, statusCode, seconds }) {
      kubeRequestDuration.observe({ verb: method, resource }, seconds);
      kubeRequests.inc({ verb: method, code: statusCode === undefined ? 'none' : String(statusCode) });
    },
    registerController(controller) {
      for (const result of RECONCILE_RESULTS) reconcileTotal.inc({ controller, result }, 0);
      reconcileErrors.inc({ controller }, 0);
      terminalReconcileErrors.inc({ controller }, 0);
      activeWorkers.set({ controller }, 0);
    },
    queueMetrics(name) {
      queueDepth.set({ name }, 0);
      queueAdds.inc({ name }, 0);
      queueRetries.inc({ name }, 0);
      queueLongestRunning.set({ name }, 0);
      return {
        added: () => queueAdds.inc({ name }),
        depth: (n) => queueDepth.set({ name }, n),
        retried: () => queueRetries.inc({ name }),
      };
    },
    observeQueue(queue) {
      queues.set(queue.name, queue);
    },
  };
  cache.set(registry, metrics);
  return metrics;
}
