// Long-running calls (imports and pushes) that outlive one reconcile. A reconcile starts one and returns; the call
// runs on in the background, its progress and outcome kept here by record UID, and every change re-enqueues the record
// (at most once per throttle interval while bytes move) so the next reconcile reads it as an observation.
//
// Concurrency: event-loop only. start() is idempotent per UID: a second start while one runs is ignored, so a
// reconcile that runs twice cannot double a transfer. State is in memory on purpose: after a controller restart the
// record's status still says Transferring, the state machine sees no operation here and starts it again, and the
// agent resumes from what containerd already holds.
import { errorMessage, isRetryable, isToteError } from '../api/index.ts';
import { detachFromApiWait } from '../runtime/api-wait.ts';
import type { Clock } from '../runtime/clock.ts';

export interface OperationState<P> {
  state: 'running' | 'succeeded' | 'failed';
  progress: P | undefined;
  error?: { retryable: boolean; reason: string; message: string };
  startedAt: number;
  finishedAt?: number;
  /** Free-form, e.g. the source node or the policy, for counting and matching. */
  tags: Record<string, string>;
}

export interface StartArgs<P> {
  uid: string;
  /** Queue key of the record to re-enqueue on changes. */
  key: string;
  tags?: Record<string, string>;
  run: (onProgress: (p: P) => void, signal: AbortSignal) => Promise<P>;
}

export class OperationTracker<P> {
  readonly #ops = new Map<string, OperationState<P> & { abort: AbortController; lastNotified: number }>();
  /** Operations decided but not started yet (their record's status is being written), by UID: their tags. */
  readonly #claims = new Map<string, Record<string, string>>();
  readonly #notify: (key: string) => void;
  readonly #clock: Clock;
  readonly #throttleMs: number;

  constructor(options: { notify: (key: string) => void; clock: Clock; throttleMs?: number }) {
    this.#notify = options.notify;
    this.#clock = options.clock;
    this.#throttleMs = options.throttleMs ?? 1_000;
  }

  get(uid: string): OperationState<P> | undefined {
    return this.#ops.get(uid);
  }

  /** Starts the operation unless one runs (or has finished and not been forgotten) for this UID. */
  start(args: StartArgs<P>): boolean {
    this.#claims.delete(args.uid);
    if (this.#ops.has(args.uid)) return false;
    const abort = new AbortController();
    const op = {
      state: 'running' as const,
      progress: undefined as P | undefined,
      startedAt: this.#clock.now(),
      tags: args.tags ?? {},
      abort,
      lastNotified: 0,
    };
    const entry: OperationState<P> & { abort: AbortController; lastNotified: number } = op;
    this.#ops.set(args.uid, entry);
    const onProgress = (p: P) => {
      if (this.#ops.get(args.uid) !== entry) return;
      entry.progress = p;
      const now = this.#clock.now();
      if (now - entry.lastNotified >= this.#throttleMs) {
        entry.lastNotified = now;
        this.#notify(args.key);
      }
    };
    // The operation outlives the reconcile that started it: its API requests are not that reconcile's wait.
    detachFromApiWait(() => args.run(onProgress, abort.signal)).then(
      (result) => {
        if (this.#ops.get(args.uid) !== entry) return;
        entry.state = 'succeeded';
        entry.progress = result;
        entry.finishedAt = this.#clock.now();
        this.#notify(args.key);
      },
      (err: unknown) => {
        if (this.#ops.get(args.uid) !== entry) return;
        entry.state = 'failed';
        entry.error = {
          retryable: isRetryable(err) || isToteError(err, 'integrity') || isToteError(err, 'unauthorized'),
          reason: isToteError(err) ? err.reason : 'Error',
          message: errorMessage(err),
        };
        entry.finishedAt = this.#clock.now();
        this.#notify(args.key);
      },
    );
    return true;
  }

  /** Drops a finished operation (or cancels a running one) so the next start() runs anew. */
  forget(uid: string): void {
    const op = this.#ops.get(uid);
    if (!op) return;
    if (op.state === 'running') op.abort.abort();
    this.#ops.delete(uid);
  }

  /**
   * Counts an operation as running from the moment it is decided: reconciles of other records run while this one
   * writes its status, and must see the slot (a policy's, a source's) taken. start() or release() ends the claim.
   */
  claim(uid: string, tags: Record<string, string>): void {
    this.#claims.set(uid, tags);
  }

  release(uid: string): void {
    this.#claims.delete(uid);
  }

  /** Running (or claimed) operations whose tag `name` equals `value`, e.g. transfers of one policy. */
  countRunning(name: string, value: string): number {
    let n = 0;
    for (const op of this.#ops.values()) if (op.state === 'running' && op.tags[name] === value) n++;
    for (const tags of this.#claims.values()) if (tags[name] === value) n++;
    return n;
  }

  /** Cancels everything (shutdown, or leadership lost). */
  cancelAll(): void {
    for (const op of this.#ops.values()) if (op.state === 'running') op.abort.abort();
    this.#ops.clear();
    this.#claims.clear();
  }
}
