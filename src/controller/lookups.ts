// Lookups a record reconcile needs from agents or registries (which digest a tag is, where an image survives, whether
// the target holds it), run outside the reconcile so a worker never waits on the network. A reconcile asks with take():
// the first time the lookup starts and the reconcile ends without deciding; when the lookup finishes the record is
// re-enqueued, and the next reconcile takes the result (which is then forgotten, so the attempt after asks anew) and
// decides on it.
//
// Concurrency: event-loop only. One lookup per record UID at a time, named by its kind (e.g. the phase and digest it
// serves): a reconcile asking for another kind abandons the old one, so a result is only ever consumed by the phase
// that asked for it. A result older than maxAgeMs when taken is discarded and the lookup runs again: no decision is
// made on stale answers. State is in memory: after a restart the record simply asks again.
import { detachFromApiWait } from '../runtime/api-wait.ts';
import type { Clock } from '../runtime/clock.ts';

export interface LookupArgs<T> {
  /** Record UID. */
  uid: string;
  /** Queue key of the record, re-enqueued when the lookup finishes. */
  key: string;
  /** What is looked up: a result is only handed to a take() of the same kind. */
  kind: string;
  /** The lookup; aborted when abandoned or on cancelAll(). */
  run: (signal: AbortSignal) => Promise<T>;
}

interface Lookup {
  kind: string;
  abort: AbortController;
  state: 'running' | 'succeeded' | 'failed';
  value?: unknown;
  error?: unknown;
  finishedAt?: number;
}

export class LookupTracker {
  readonly #lookups = new Map<string, Lookup>();
  readonly #notify: (key: string) => void;
  readonly #clock: Clock;
  readonly #maxAgeMs: number;
  #lastPrune = 0;

  constructor(options: { notify: (key: string) => void; clock: Clock; maxAgeMs?: number }) {
    this.#notify = options.notify;
    this.#clock = options.clock;
    this.#maxAgeMs = options.maxAgeMs ?? 5_000;
  }

  /**
   * The finished result of this lookup, forgotten once taken; or undefined when it is not ready, after making sure it
   * runs (started now, or still running).
   * @throws the lookup's error, once, when it failed.
   */
  take<T>(args: LookupArgs<T>): { value: T } | undefined {
    const now = this.#clock.now();
    const lookup = this.#lookups.get(args.uid);
    if (lookup?.kind === args.kind) {
      if (lookup.state === 'running') return undefined;
      this.#lookups.delete(args.uid);
      if (now - (lookup.finishedAt ?? now) <= this.#maxAgeMs) {
        if (lookup.state === 'failed') throw lookup.error;
        return { value: lookup.value as T };
      }
    } else if (lookup) {
      this.#forget(args.uid);
    }
    this.#start(args, now);
    return undefined;
  }

  /** Lookups running now. */
  get running(): number {
    let n = 0;
    for (const lookup of this.#lookups.values()) if (lookup.state === 'running') n++;
    return n;
  }

  #start<T>(args: LookupArgs<T>, now: number): void {
    this.#prune(now);
    const lookup: Lookup = { kind: args.kind, abort: new AbortController(), state: 'running' };
    this.#lookups.set(args.uid, lookup);
    const finish = (state: 'succeeded' | 'failed', outcome: unknown) => {
      if (this.#lookups.get(args.uid) !== lookup) return;
      lookup.state = state;
      if (state === 'succeeded') lookup.value = outcome;
      else lookup.error = outcome;
      lookup.finishedAt = this.#clock.now();
      this.#notify(args.key);
    };
    // The lookup outlives the reconcile that started it: its API requests are not that reconcile's wait.
    detachFromApiWait(() =>
      new Promise<T>((resolve) => resolve(args.run(lookup.abort.signal))).then(
        (value) => finish('succeeded', value),
        (err: unknown) => finish('failed', err),
      ),
    );
  }

  #forget(uid: string): void {
    this.#lookups.get(uid)?.abort.abort();
    this.#lookups.delete(uid);
  }

  /** Results nobody took (the record was deleted or moved on) go once they are too old to be used. */
  #prune(now: number): void {
    if (now - this.#lastPrune < this.#maxAgeMs) return;
    this.#lastPrune = now;
    for (const [uid, lookup] of this.#lookups) {
      if (lookup.state !== 'running' && now - (lookup.finishedAt ?? now) > this.#maxAgeMs) this.#lookups.delete(uid);
    }
  }

  /** Cancels everything (shutdown, or leadership lost). */
  cancelAll(): void {
    for (const lookup of this.#lookups.values()) lookup.abort.abort();
    this.#lookups.clear();
  }
}
