// The reconcile loop of one controller, after controller-runtime's processNextWorkItem / reconcileHandler: workers take
// keys from a WorkQueue, call reconcile with a child logger carrying the key and a fresh reconcile id, and turn the
// outcome into the queue's next move and the tote_reconcile_* metrics:
//
//   outcome                              | queue                       | result label  | counted as error
//   returns nothing / {}                 | forget                      | success       | no
//   returns { requeueAfterMs: n > 0 }    | forget, addAfter(n)         | requeue_after | no
//   returns { requeue: true }            | addRateLimited              | requeue       | no
//   throws ToteError kind 'conflict'     | addRateLimited              | requeue       | no (re-read and retry)
//   throws ToteError kind 'terminal'     | forget (not retried)        | error         | yes (+ terminal counter)
//   throws anything else                 | addRateLimited              | error         | yes
//
// Concurrency: the queue guarantees one key is never reconciled by two workers at once; up to `workers` different
// keys run concurrently.

import { randomUUID } from 'node:crypto';
import { ToteError, errorMessage } from '../api/errors.ts';
import { tallyApiWait } from './api-wait.ts';
import { silentLogger } from './logging.ts';
import type { Logger } from './logging.ts';
import type { ReconcileResultLabel, RuntimeMetrics } from './metrics.ts';
import type { WorkQueue } from './workqueue.ts';

/** What a reconcile asks for next. Nothing (or {}) means done until something changes. */
export interface ReconcileResult {
  /** Run again after the rate limiter's backoff. */
  requeue?: boolean;
  /** Run again after this many ms (e.g. a TTL or a retry time recorded in status). Wins over requeue. */
  requeueAfterMs?: number;
}

/** Context of one reconcile. */
export interface ReconcileContext {
  /** Child logger with { controller, key, reconcileId }. */
  readonly log: Logger;
  readonly reconcileId: string;
  /** Aborts when the controller shuts down without draining (leadership lost): stop early, leave state consistent. */
  readonly signal: AbortSignal;
}

export type Reconciler = (key: string, ctx: ReconcileContext) => Promise<ReconcileResult | void>;

export interface ReconcileLoopOptions {
  /** Controller name: the `controller` label and log field. */
  name: string;
  queue: WorkQueue;
  reconcile: Reconciler;
  workers?: number;
  logger?: Logger;
  metrics?: RuntimeMetrics;
  /** Milliseconds, for durations (default performance.now). */
  now?: () => number;
}

/** How one outcome was classified (exported for tests and for callers that run reconciles themselves). */
export function classifyOutcome(
  outcome: { ok: true; result: ReconcileResult | void } | { ok: false; error: unknown },
): {
  label: ReconcileResultLabel;
  action: 'forget' | 'after' | 'rate-limited';
  afterMs?: number;
  isError: boolean;
  terminal: boolean;
} {
  if (outcome.ok) {
    const r = outcome.result ?? {};
    if (r.requeueAfterMs !== undefined && r.requeueAfterMs > 0)
      return { label: 'requeue_after', action: 'after', afterMs: r.requeueAfterMs, isError: false, terminal: false };
    if (r.requeue) return { label: 'requeue', action: 'rate-limited', isError: false, terminal: false };
    return { label: 'success', action: 'forget', isError: false, terminal: false };
  }
  const err = outcome.error;
  if (err instanceof ToteError && err.kind === 'conflict')
    return { label: 'requeue', action: 'rate-limited', isError: false, terminal: false };
  if (err instanceof ToteError && err.kind === 'terminal')
    return { label: 'error', action: 'forget', isError: true, terminal: true };
  return { label: 'error', action: 'rate-limited', isError: true, terminal: false };
}

/**
 * Runs the controller's workers until the queue shuts down (queue.shutdown({ drain }) ends it); resolves when every
 * worker has finished its last reconcile.
 */
export function runReconcileLoop(options: ReconcileLoopOptions): Promise<void> {
  const { name, queue, reconcile } = options;
  const baseLog = (options.logger ?? silentLogger).child({ controller: name });
  const metrics = options.metrics;
  const now = options.now ?? (() => performance.now());
  metrics?.registerController(name);

  return queue.run(options.workers ?? 1, async (key, signal) => {
    const reconcileId = randomUUID();
    const log = baseLog.child({ key, reconcileId });
    const started = now();
    const apiWait = { seconds: 0 };
    metrics?.activeWorkers.inc({ controller: name });
    let outcome: { ok: true; result: ReconcileResult | void } | { ok: false; error: unknown };
    try {
      outcome = { ok: true, result: await tallyApiWait(apiWait, () => reconcile(key, { log, reconcileId, signal })) };
    } catch (error) {
      outcome = { ok: false, error };
    } finally {
      metrics?.activeWorkers.dec({ controller: name });
      const seconds = (now() - started) / 1000;
      metrics?.reconcileDuration.observe({ controller: name }, seconds);
      metrics?.reconcileOwnDuration.observe({ controller: name }, Math.max(0, seconds - apiWait.seconds));
    }
    const c = classifyOutcome(outcome);
    metrics?.reconcileTotal.inc({ controller: name, result: c.label });
    if (c.isError) metrics?.reconcileErrors.inc({ controller: name });
    if (c.terminal) metrics?.terminalReconcileErrors.inc({ controller: name });
    if (!outcome.ok) {
      const fields = {
        error: errorMessage(outcome.error),
        kind: outcome.error instanceof ToteError ? outcome.error.kind : 'unknown',
        reason: outcome.error instanceof ToteError ? outcome.error.reason : undefined,
        requeues: queue.numRequeues(key),
      };
      if (c.isError)
        log.error(c.terminal ? 'reconcile failed (terminal, not retried)' : 'reconcile failed, will retry', fields);
      else log.debug('conflict, re-reading and retrying', fields);
    }
    if (c.action === 'forget') queue.forget(key);
    else if (c.action === 'after') {
      queue.forget(key);
      queue.addAfter(key, c.afterMs as number);
    } else queue.addRateLimited(key);
  });
}
