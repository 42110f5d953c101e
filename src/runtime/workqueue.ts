// A de-duplicating, level-triggered work queue keyed by string, after client-go's workqueue.
//
// Concurrency model. Node runs this on one thread, so the bookkeeping below is never interleaved; "concurrency" means
// several async workers awaiting at once. Three sets carry the invariants:
//   - `dirty`: keys that need processing (queued, or re-added while being processed). add() of a dirty key is a no-op,
//     which is the de-duplication: ten events for one object before a worker gets to it mean one reconcile.
//   - `processing`: keys a worker holds between get() and done(). A key added while it is processing is marked dirty
//     but NOT queued; done() queues it then. So one key is never handled by two workers at once, and a change seen
//     during a reconcile is never lost (the key runs again after).
//   - `queue`: FIFO of keys ready to hand out; every queued key is dirty and not processing.
// Delays (addAfter, addRateLimited) are timers on an injected Clock that call add() when due; only the earliest pending
// delay per key is kept. Shutdown stops accepting keys, cancels delays and waits for in-flight keys; with drain it
// first lets workers finish what is already queued.

import { systemClock } from './clock.ts';
import type { Clock, TimerHandle } from './clock.ts';

/** Decides how long a key waits before being retried. */
export interface RateLimiter {
  /** The delay (ms) before the next attempt for key; each call counts as one more failure. */
  when(key: string): number;
  /** Clears the failure history of key (call after a success). */
  forget(key: string): void;
  /** How many times key has been rate-limited since the last forget. */
  numRequeues(key: string): number;
}

/** Per-key exponential backoff: base · 2^failures, capped at max. */
export class ExponentialBackoffRateLimiter implements RateLimiter {
  readonly #baseMs: number;
  readonly #maxMs: number;
  readonly #failures = new Map<string, number>();

  constructor(options: { baseMs?: number; maxMs?: number } = {}) {
    this.#baseMs = options.baseMs ?? 5;
    this.#maxMs = options.maxMs ?? 1_000_000;
  }

  when(key: string): number {
    const failures = this.#failures.get(key) ?? 0;
    this.#failures.set(key, failures + 1);
    // 2^failures overflows to Infinity long after the cap is reached; min() keeps it finite.
    return Math.min(this.#maxMs, this.#baseMs * 2 ** failures);
  }

  forget(key: string): void {
    this.#failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.#failures.get(key) ?? 0;
  }
}

/**
 * An overall token bucket shared by all keys (qps tokens per second, up to burst), so a storm of failures cannot
 * hammer the API server even when every key is new. Like golang.org/x/time/rate Reserve: a request that finds no token
 * takes one on credit and waits until it would have been refilled.
 */
export class TokenBucketRateLimiter implements RateLimiter {
  readonly #qps: number;
  readonly #burst: number;
  readonly #clock: Clock;
  #tokens: number;
  #last: number;

  constructor(options: { qps?: number; burst?: number; clock?: Clock } = {}) {
    this.#qps = options.qps ?? 10;
    this.#burst = options.burst ?? 100;
    this.#clock = options.clock ?? systemClock;
    this.#tokens = this.#burst;
    this.#last = this.#clock.now();
  }

  when(_key: string): number {
    const now = this.#clock.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) * this.#qps) / 1000);
    this.#last = now;
    this.#tokens -= 1;
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens * 1000) / this.#qps);
  }

  forget(_key: string): void {}

  numRequeues(_key: string): number {
    return 0;
  }
}

/** Waits as long as the slowest of its limiters (client-go's MaxOfRateLimiter). */
export class MaxOfRateLimiter implements RateLimiter {
  readonly #limiters: readonly RateLimiter[];

  constructor(...limiters: RateLimiter[]) {
    this.#limiters = limiters;
  }

  when(key: string): number {
    let max = 0;
    for (const l of this.#limiters) max = Math.max(max, l.when(key));
    return max;
  }

  forget(key: string): void {
    for (const l of this.#limiters) l.forget(key);
  }

  numRequeues(key: string): number {
    let max = 0;
    for (const l of this.#limiters) max = Math.max(max, l.numRequeues(key));
    return max;
  }
}

/** Settings of the default controller rate limiter. */
export interface RateLimiterOptions {
  /** First retry delay of a key (default 5 ms). */
  baseDelayMs?: number;
  /** Largest retry delay of a key (default 1000 s). */
  maxDelayMs?: number;
  /** Overall retries per second across keys (default 10). */
  qps?: number;
  /** Overall burst (default 100). */
  burst?: number;
  clock?: Clock;
}

/** controller-runtime's default: per-key exponential backoff combined with an overall token bucket. */
export function defaultRateLimiter(options: RateLimiterOptions = {}): RateLimiter {
  return new MaxOfRateLimiter(
    new ExponentialBackoffRateLimiter({ baseMs: options.baseDelayMs ?? 5, maxMs: options.maxDelayMs ?? 1_000_000 }),
    new TokenBucketRateLimiter({ qps: options.qps ?? 10, burst: options.burst ?? 100, clock: options.clock }),
  );
}

/** What a queue reports; src/runtime/metrics.ts binds it to Prometheus. Every method is optional. */
export interface WorkQueueMetrics {
  /** A key was inserted (not counted when de-duplicated). */
  added?(): void;
  /** The number of queued (ready) keys changed. */
  depth?(n: number): void;
  /** addRateLimited was called. */
  retried?(): void;
}

export interface WorkQueueOptions {
  /** Used in metrics and logs. */
  name: string;
  clock?: Clock;
  /** Default: defaultRateLimiter() on the same clock. */
  rateLimiter?: RateLimiter;
  metrics?: WorkQueueMetrics;
  /**
   * Called when a handler given to run() throws. The key is re-queued rate-limited either way; this is where the error
   * gets logged. Handlers should handle their own errors (see reconcile-loop.ts); this is the safety net.
   */
  onHandlerError?: (key: string, err: unknown) => void;
}

/** A handler run by the queue's workers. The signal aborts when the queue shuts down without draining. */
export type WorkHandler = (key: string, signal: AbortSignal) => Promise<void>;

export class WorkQueue {
  readonly name: string;
  readonly #clock: Clock;
  readonly #limiter: RateLimiter;
  readonly #metrics: WorkQueueMetrics;
  readonly #onHandlerError: ((key: string, err: unknown) => void) | undefined;

  #queue: string[] = [];
  #head = 0;
  readonly #dirty = new Set<string>();
  /** key → time (ms) a worker took it. */
  readonly #processing = new Map<string, number>();
  readonly #delayed = new Map<string, { at: number; handle: TimerHandle }>();
  readonly #waiters: ((key: string | undefined) => void)[] = [];
  readonly #idleWaiters: (() => void)[] = [];
  readonly #abort = new AbortController();
  #shuttingDown = false;
  #drain = false;

  constructor(options: WorkQueueOptions) {
    this.name = options.name;
    this.#clock = options.clock ?? systemClock;
    this.#limiter = options.rateLimiter ?? defaultRateLimiter({ clock: this.#clock });
    this.#metrics = options.metrics ?? {};
    this.#onHandlerError = options.onHandlerError;
  }

  /** Marks key as needing work. No-op when it is already queued, or after shutdown. */
  add(key: string): void {
    if (this.#shuttingDown || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    this.#metrics.added?.();
    if (this.#processing.has(key)) return; // done() queues it
    this.#push(key);
  }

  /** Adds key after ms. When key already waits for an earlier time, that earlier time wins. */
  addAfter(key: string, ms: number): void {
    if (this.#shuttingDown) return;
    if (ms <= 0) return this.add(key);
    const at = this.#clock.now() + ms;
    const existing = this.#delayed.get(key);
    if (existing) {
      if (existing.at <= at) return;
      this.#clock.clearTimeout(existing.handle);
    }
    const handle = this.#clock.setTimeout(() => {
      this.#delayed.delete(key);
      this.add(key);
    }, ms);
    this.#delayed.set(key, { at, handle });
  }

  /** Adds key after the rate limiter's delay: per-key exponential backoff, bounded by the overall rate. */
  addRateLimited(key: string): void {
    if (this.#shuttingDown) return;
    this.#metrics.retried?.();
    this.addAfter(key, this.#limiter.when(key));
  }

  /** Clears key's backoff history; call when it was handled successfully. */
  forget(key: string): void {
    this.#limiter.forget(key);
  }

  /** How many rate-limited retries key has had since the last forget(). */
  numRequeues(key: string): number {
    return this.#limiter.numRequeues(key);
  }

  /**
   * The next key to process, waiting until one is ready. Resolves undefined once the queue is shut down (after the
   * remaining keys are handed out when draining). Every key returned must be passed to done().
   */
  get(): Promise<string | undefined> {
    const ready = this.#pop();
    if (ready !== undefined) return Promise.resolve(ready);
    if (this.#shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Releases key after processing; when it was added meanwhile, it is queued again now. */
  done(key: string): void {
    this.#processing.delete(key);
    if (this.#dirty.has(key)) {
      if (this.#shuttingDown && !this.#drain) this.#dirty.delete(key);
      else this.#push(key);
    }
    this.#checkIdle();
  }

  /** Keys ready to be handed out (not counting keys in flight or waiting on a delay). */
  get length(): number {
    return this.#queue.length - this.#head;
  }

  /** Keys currently held by workers. */
  get inFlight(): number {
    return this.#processing.size;
  }

  /** Keys waiting on a delay (addAfter / addRateLimited). */
  get delayedCount(): number {
    return this.#delayed.size;
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /** How long (ms) the longest-running in-flight key has been held; 0 when idle. */
  longestRunningMs(): number {
    let oldest: number | undefined;
    for (const start of this.#processing.values()) if (oldest === undefined || start < oldest) oldest = start;
    return oldest === undefined ? 0 : this.#clock.now() - oldest;
  }

  /**
   * Runs `workers` loops that take keys and call handler until the queue shuts down; resolves when they have all
   * exited. A key is done() when its handler settles, whatever the outcome.
   */
  async run(workers: number, handler: WorkHandler): Promise<void> {
    const loop = async (): Promise<void> => {
      for (;;) {
        const key = await this.get();
        if (key === undefined) return;
        try {
          await handler(key, this.#abort.signal);
        } catch (err) {
          this.done(key);
          this.addRateLimited(key);
          this.#onHandlerError?.(key, err);
          continue;
        }
        this.done(key);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, workers) }, loop));
  }

  /**
   * Stops accepting keys and cancels pending delays. With drain, workers still receive the keys already queued;
   * without, those are dropped and the handlers' signal aborts. Resolves when no key is in flight (and, when
   * draining, none is queued).
   */
  shutdown(options: { drain: boolean }): Promise<void> {
    if (!this.#shuttingDown) {
      this.#shuttingDown = true;
      this.#drain = options.drain;
      for (const { handle } of this.#delayed.values()) this.#clock.clearTimeout(handle);
      this.#delayed.clear();
      if (!options.drain) {
        for (let i = this.#head; i < this.#queue.length; i++) this.#dirty.delete(this.#queue[i] as string);
        this.#queue = [];
        this.#head = 0;
        this.#metrics.depth?.(0);
        this.#abort.abort(new Error(`work queue ${this.name} shut down`));
      }
      // Idle workers will get nothing more: release them.
      if (this.length === 0) for (const w of this.#waiters.splice(0)) w(undefined);
    }
    return new Promise((resolve) => {
      this.#idleWaiters.push(resolve);
      this.#checkIdle();
    });
  }

  #push(key: string): void {
    const waiter = this.#waiters.shift();
    if (waiter) {
      this.#take(key);
      waiter(key);
      return;
    }
    this.#queue.push(key);
    this.#metrics.depth?.(this.length);
  }

  #pop(): string | undefined {
    if (this.#head >= this.#queue.length) return undefined;
    const key = this.#queue[this.#head++] as string;
    // Compact now and then so the array does not grow without bound.
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    this.#metrics.depth?.(this.length);
    this.#take(key);
    return key;
  }

  #take(key: string): void {
    this.#dirty.delete(key);
    this.#processing.set(key, this.#clock.now());
  }

  #checkIdle(): void {
    if (!this.#shuttingDown) return;
    if (this.length === 0) for (const w of this.#waiters.splice(0)) w(undefined);
    if (this.#processing.size > 0 || this.length > 0) return;
    for (const w of this.#idleWaiters.splice(0)) w();
  }
}
