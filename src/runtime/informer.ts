// Supervised informers: a local, indexed cache of one resource type kept current by list-then-watch, and event
// handlers that only enqueue keys (level-triggered: a reconcile reads the cache and converges, whatever happened).
//
// Concurrency model. One supervisor loop per informer (an async function) owns the cache; it alternates between
// listing (which replaces the cache and re-announces every object, so each relist re-enqueues the world) and watching
// from the last resourceVersion. Handlers run synchronously inside that loop, so they must be cheap (queue.add).
// The loop restarts a failed watch with capped exponential backoff plus jitter; a watch that ends normally (server
// timeout, the transport's inactivity timeout on a silent connection) resumes at once from the same resourceVersion;
// 410 Gone (the resourceVersion fell out of the server's window) forces a relist; a jittered timer forces a periodic
// relist as well. `synced` resolves after the first complete list.
//
// Objects are stored as the API server sends them (JSON, timestamps as strings), after the transform hook, which is
// where Pods are trimmed to the fields tote reads so the cache of a big cluster stays small.

import type { KubernetesObject } from '@kubernetes/client-node';
import { errorMessage } from '../api/errors.ts';
import { delay, systemClock } from './clock.ts';
import type { Clock, TimerHandle } from './clock.ts';
import { isGone, objectKey, toKubeError } from './kube.ts';
import type { KubeClient, KubeStatus, ResourceType } from './kube.ts';
import { silentLogger } from './logging.ts';
import type { Logger } from './logging.ts';
import type { RuntimeMetrics } from './metrics.ts';

/** One page of a list. */
export interface ListPage<T> {
  items: T[];
  metadata?: { resourceVersion?: string; _continue?: string; continue?: string };
}

/** Watch event types as the API server sends them. */
export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

/**
 * The transport an informer runs on: list pages and a watch from a resourceVersion. kubeListerWatcher() is the real
 * one; unit tests inject their own.
 */
export interface ListerWatcher<T> {
  list(options: { limit?: number; continue?: string }): Promise<ListPage<T>>;
  /**
   * Starts a watch. onEvent gets each event; onDone is called once when the watch ends (err undefined: closed
   * normally). Resolves to a function that aborts the watch (after which onDone may or may not be called).
   */
  watch(
    resourceVersion: string,
    onEvent: (type: WatchEventType, object: unknown) => void,
    onDone: (err?: unknown) => void,
  ): Promise<() => void>;
}

/** A ListerWatcher over the API server for one resource type, optionally one namespace and selectors. */
export function kubeListerWatcher<T extends KubernetesObject>(
  client: KubeClient,
  resource: ResourceType,
  options: { namespace?: string; labelSelector?: string; fieldSelector?: string; random?: () => number } = {},
): ListerWatcher<T> {
  const random = options.random ?? Math.random;
  const selectors = { labelSelector: options.labelSelector, fieldSelector: options.fieldSelector };
  return {
    list: (page) => client.list<T>(resource, options.namespace, { ...selectors, ...page }),
    watch: async (resourceVersion, onEvent, onDone) => {
      return client.watch(
        resource,
        options.namespace,
        {
          ...selectors,
          resourceVersion,
          // Like client-go: a server-side timeout between 5 and 10 minutes spreads reconnections out.
          timeoutSeconds: Math.floor(300 + random() * 300),
        },
        (event) => onEvent(event.type as WatchEventType, event.object),
        onDone,
      );
    },
  };
}

/** Callbacks on cache changes. Keep them cheap: enqueue a key and return. */
export interface EventHandler<T> {
  add?(obj: T): void;
  /** Also called for every object on each relist (periodic resync), with old === new when nothing changed. */
  update?(oldObj: T, newObj: T): void;
  delete?(obj: T): void;
}

/** Computes index values of an object, e.g. pods by node name. */
export type IndexFunc<T> = (obj: T) => readonly string[];

export interface InformerOptions<T> {
  /** Names the informer in logs and metrics, e.g. 'pods'. */
  name: string;
  listerWatcher: ListerWatcher<T>;
  /** Applied to every object before it is cached or handed to handlers. Default: drop metadata.managedFields. */
  transform?: (obj: T) => T;
  indexers?: Readonly<Record<string, IndexFunc<T>>>;
  /** Mean period of full relists, jittered ±10% (default 10 min; 0 disables). */
  resyncPeriodMs?: number;
  /** Watch/list restart backoff: initial delay (default 800 ms) doubling up to max (default 30 s), plus jitter. */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** List page size (default 500). */
  pageSize?: number;
  clock?: Clock;
  random?: () => number;
  logger?: Logger;
  metrics?: RuntimeMetrics;
}

/** What an informer is doing, for /readyz details and debugging. */
export interface InformerStatus {
  synced: boolean;
  resourceVersion: string;
  objects: number;
  watchRestarts: number;
  relists: number;
  lastError: string | undefined;
}

type Outcome =
  | { kind: 'closed'; sawEvent: boolean }
  | { kind: 'gone' }
  | { kind: 'relist' }
  | { kind: 'stopped' }
  | { kind: 'error'; err: unknown; sawEvent: boolean };

/** Drops metadata.managedFields: large, and never read by tote. */
export function dropManagedFields<T>(obj: T): T {
  const meta = (obj as { metadata?: Record<string, unknown> }).metadata;
  if (!meta || !('managedFields' in meta)) return obj;
  const { managedFields: _dropped, ...rest } = meta;
  return { ...obj, metadata: rest };
}

export class Informer<T extends KubernetesObject> {
  readonly name: string;
  /** Resolves after the first complete list has filled the cache. */
  readonly synced: Promise<void>;

  readonly #lw: ListerWatcher<T>;
  readonly #transform: (obj: T) => T;
  readonly #indexers: Readonly<Record<string, IndexFunc<T>>>;
  readonly #indexes = new Map<string, Map<string, Set<string>>>();
  readonly #items = new Map<string, T>();
  readonly #handlers = new Set<EventHandler<T>>();
  readonly #resyncMs: number;
  readonly #backoffInitialMs: number;
  readonly #backoffMaxMs: number;
  readonly #pageSize: number;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #log: Logger;
  readonly #metrics: RuntimeMetrics | undefined;

  #resolveSynced!: () => void;
  #hasSynced = false;
  #resourceVersion = '';
  #running: Promise<void> | undefined;
  #stopping = new AbortController();
  #endWatch: ((outcome: Outcome) => void) | undefined;
  #relistTimer: TimerHandle | undefined;
  #relistDue = false;
  #watchRestarts = 0;
  #relists = 0;
  #revision = 0;
  #lastError: string | undefined;

  constructor(options: InformerOptions<T>) {
    this.name = options.name;
    this.#lw = options.listerWatcher;
    this.#transform = options.transform ?? dropManagedFields;
    this.#indexers = options.indexers ?? {};
    for (const index of Object.keys(this.#indexers)) this.#indexes.set(index, new Map());
    this.#resyncMs = options.resyncPeriodMs ?? 10 * 60_000;
    this.#backoffInitialMs = options.backoffInitialMs ?? 800;
    this.#backoffMaxMs = options.backoffMaxMs ?? 30_000;
    this.#pageSize = options.pageSize ?? 500;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#log = (options.logger ?? silentLogger).child({ informer: options.name });
    this.#metrics = options.metrics;
    this.synced = new Promise((resolve) => (this.#resolveSynced = resolve));
  }

  /** Starts the supervisor loop (idempotent). */
  start(): void {
    this.#running ??= this.#run();
  }

  /** Stops watching and timers; resolves when the loop has exited. The cache stays readable. */
  async stop(): Promise<void> {
    this.#stopping.abort(new Error(`informer ${this.name} stopped`));
    if (this.#relistTimer) this.#clock.clearTimeout(this.#relistTimer);
    this.#endWatch?.({ kind: 'stopped' });
    await this.#running;
  }

  hasSynced(): boolean {
    return this.#hasSynced;
  }

  /** Registers handlers. After the first sync, the new handler is first told about every cached object as added. */
  addEventHandler(handler: EventHandler<T>): () => void {
    this.#handlers.add(handler);
    if (this.#hasSynced) for (const obj of this.#items.values()) this.#call(() => handler.add?.(obj));
    return () => this.#handlers.delete(handler);
  }

  /** The cached object under key ("namespace/name" or "name"). */
  get(key: string): T | undefined {
    return this.#items.get(key);
  }

  /** The cached object by name (and namespace for namespaced types). */
  getByName(name: string, namespace?: string): T | undefined {
    return this.#items.get(namespace ? `${namespace}/${name}` : name);
  }

  /** All cached objects, or those of one namespace. */
  list(namespace?: string): T[] {
    const out: T[] = [];
    for (const obj of this.#items.values())
      if (namespace === undefined || obj.metadata?.namespace === namespace) out.push(obj);
    return out;
  }

  /** Keys of all cached objects. */
  keys(): string[] {
    return [...this.#items.keys()];
  }

  /** Objects whose index function returned value, e.g. byIndex('node', 'node-a'). */
  byIndex(index: string, value: string): T[] {
    const idx = this.#indexes.get(index);
    if (!idx) throw new Error(`informer ${this.name} has no index ${index}`);
    const out: T[] = [];
    for (const key of idx.get(value) ?? []) {
      const obj = this.#items.get(key);
      if (obj) out.push(obj);
    }
    return out;
  }

  /**
   * Counts changes to the cache (an object added, replaced or removed): callers that derive something from the whole
   * cache (say, the live agents from their Leases) recompute it only when this moved.
   */
  get revision(): number {
    return this.#revision;
  }

  /** The resourceVersion the cache is current at. */
  get resourceVersion(): string {
    return this.#resourceVersion;
  }

  status(): InformerStatus {
    return {
      synced: this.#hasSynced,
      resourceVersion: this.#resourceVersion,
      objects: this.#items.size,
      watchRestarts: this.#watchRestarts,
      relists: this.#relists,
      lastError: this.#lastError,
    };
  }

  /** Asks for a relist now (as the periodic timer does): the current watch ends and the cache is listed again. */
  requestRelist(): void {
    this.#relistDue = true;
    this.#endWatch?.({ kind: 'relist' });
  }

  async #run(): Promise<void> {
    const signal = this.#stopping.signal;
    let needList = true;
    let failures = 0;
    while (!signal.aborted) {
      try {
        if (needList || this.#relistDue) {
          await this.#listAll();
          needList = false;
          failures = 0;
        }
        const outcome = await this.#watchOnce();
        if (outcome.kind === 'stopped' || signal.aborted) break;
        if (outcome.kind === 'gone') {
          this.#log.info('watch resourceVersion expired (410), relisting', { resourceVersion: this.#resourceVersion });
          needList = true;
          continue;
        }
        if (outcome.kind === 'relist') continue;
        if (outcome.kind === 'closed') {
          // A watch that closes without delivering anything is treated as a failure so a server that accepts and
          // drops connections is not hammered in a tight loop.
          if (outcome.sawEvent) failures = 0;
          else if (++failures > 1) await this.#backoff(failures - 1, signal);
          continue;
        }
        if (outcome.sawEvent) failures = 0;
        failures++;
        this.#watchRestarts++;
        this.#metrics?.informerRestarts.inc({ resource: this.name });
        this.#lastError = errorMessage(outcome.err);
        this.#log.warn('watch failed, restarting with backoff', { error: this.#lastError, attempt: failures });
        await this.#backoff(failures, signal);
      } catch (err) {
        if (signal.aborted) break;
        failures++;
        this.#lastError = errorMessage(err);
        this.#log.warn('list failed, retrying with backoff', { error: this.#lastError, attempt: failures });
        await this.#backoff(failures, signal);
      }
    }
  }

  /** Capped exponential backoff with up to +50% jitter; resolves early (without throwing) on stop. */
  async #backoff(failures: number, signal: AbortSignal): Promise<void> {
    const base = Math.min(this.#backoffMaxMs, this.#backoffInitialMs * 2 ** Math.max(0, failures - 1));
    try {
      await delay(this.#clock, base * (1 + 0.5 * this.#random()), signal);
    } catch {
      // stopped
    }
  }

  async #listAll(): Promise<void> {
    const items: T[] = [];
    let cont: string | undefined;
    let resourceVersion = '';
    for (;;) {
      let page: ListPage<T>;
      try {
        page = await this.#lw.list({ limit: this.#pageSize, continue: cont });
      } catch (err) {
        const converted = toKubeError(err, `list ${this.name}`);
        // The continue token expired between pages: start the list over for a consistent snapshot.
        if (cont !== undefined && isGone(converted)) {
          items.length = 0;
          cont = undefined;
          continue;
        }
        throw converted;
      }
      for (const item of page.items) items.push(this.#transform(item));
      resourceVersion = page.metadata?.resourceVersion ?? resourceVersion;
      cont = page.metadata?._continue || page.metadata?.continue || undefined;
      if (!cont) break;
    }
    this.#relists++;
    this.#metrics?.informerRelists.inc({ resource: this.name });
    this.#replace(items, resourceVersion);
    this.#relistDue = false;
    this.#armRelistTimer();
    if (!this.#hasSynced) {
      this.#hasSynced = true;
      this.#log.info('cache synced', { objects: this.#items.size, resourceVersion });
      this.#resolveSynced();
    }
  }

  #armRelistTimer(): void {
    if (this.#relistTimer) this.#clock.clearTimeout(this.#relistTimer);
    this.#relistTimer = undefined;
    if (this.#resyncMs <= 0 || this.#stopping.signal.aborted) return;
    const period = this.#resyncMs * (0.9 + 0.2 * this.#random());
    this.#relistTimer = this.#clock.setTimeout(() => {
      this.#relistTimer = undefined;
      this.requestRelist();
    }, period);
  }

  #watchOnce(): Promise<Outcome> {
    if (this.#stopping.signal.aborted) return Promise.resolve({ kind: 'stopped' });
    if (this.#relistDue) return Promise.resolve({ kind: 'relist' });
    return new Promise<Outcome>((resolve) => {
      let settled = false;
      let sawEvent = false;
      let abort: (() => void) | undefined;
      const finish = (outcome: Outcome) => {
        if (settled) return;
        settled = true;
        this.#endWatch = undefined;
        abort?.();
        resolve(outcome);
      };
      this.#endWatch = finish;
      const onEvent = (type: WatchEventType, object: unknown) => {
        if (settled) return;
        sawEvent = true;
        if (type === 'ERROR') {
          const status = object as KubeStatus;
          finish(
            status?.code === 410
              ? { kind: 'gone' }
              : { kind: 'error', err: new Error(`watch error: ${status?.message ?? 'unknown'}`), sawEvent },
          );
          return;
        }
        const rv = (object as KubernetesObject | undefined)?.metadata?.resourceVersion;
        if (type === 'BOOKMARK') {
          if (rv) this.#resourceVersion = rv;
          return;
        }
        const obj = this.#transform(object as T);
        if (type === 'ADDED' || type === 'MODIFIED') this.#upsert(obj);
        else if (type === 'DELETED') this.#remove(obj);
        if (rv) this.#resourceVersion = rv;
      };
      const onDone = (err?: unknown) => {
        if (settled) return;
        if (err === undefined || err === null) return finish({ kind: 'closed', sawEvent });
        const converted = toKubeError(err, `watch ${this.name}`);
        if (isGone(converted)) return finish({ kind: 'gone' });
        // The transport ends a connection silent for too long (kube-http.ts): a normal end, not a failure.
        if (converted.reason === 'Timeout') return finish({ kind: 'closed', sawEvent: true });
        finish({ kind: 'error', err: converted, sawEvent });
      };
      this.#lw.watch(this.#resourceVersion, onEvent, onDone).then(
        (abortFn) => {
          if (settled) abortFn();
          else abort = abortFn;
        },
        (err) => finish({ kind: 'error', err: toKubeError(err, `watch ${this.name}`), sawEvent }),
      );
    });
  }

  #replace(items: T[], resourceVersion: string): void {
    const seen = new Set<string>();
    for (const obj of items) {
      const key = objectKey(obj);
      seen.add(key);
      this.#upsert(obj, true);
    }
    for (const [key, old] of [...this.#items]) if (!seen.has(key)) this.#remove(old);
    this.#resourceVersion = resourceVersion;
  }

  #upsert(obj: T, fromList = false): void {
    const key = objectKey(obj);
    const old = this.#items.get(key);
    this.#items.set(key, obj);
    this.#revision++;
    this.#reindex(key, old, obj);
    for (const h of this.#handlers) {
      if (old === undefined) this.#call(() => h.add?.(obj));
      else if (fromList || old.metadata?.resourceVersion !== obj.metadata?.resourceVersion)
        this.#call(() => h.update?.(old, obj));
    }
  }

  #remove(obj: T): void {
    const key = objectKey(obj);
    const old = this.#items.get(key);
    if (!old) return;
    this.#items.delete(key);
    this.#revision++;
    this.#reindex(key, old, undefined);
    for (const h of this.#handlers) this.#call(() => h.delete?.(obj));
  }

  #reindex(key: string, old: T | undefined, next: T | undefined): void {
    for (const [name, fn] of Object.entries(this.#indexers)) {
      const idx = this.#indexes.get(name) as Map<string, Set<string>>;
      if (old)
        for (const v of fn(old)) {
          const set = idx.get(v);
          set?.delete(key);
          if (set?.size === 0) idx.delete(v);
        }
      if (next)
        for (const v of fn(next)) {
          let set = idx.get(v);
          if (!set) idx.set(v, (set = new Set()));
          set.add(key);
        }
    }
  }

  #call(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      // A handler bug must not take the cache down with it; it is logged loudly instead.
      this.#log.error('event handler threw', { error: errorMessage(err) });
    }
  }
}

/** Creates an informer over the API server (kubeListerWatcher + Informer) and starts nothing yet. */
export function createInformer<T extends KubernetesObject>(
  client: KubeClient,
  resource: ResourceType,
  options: Omit<InformerOptions<T>, 'listerWatcher' | 'name'> & {
    name?: string;
    namespace?: string;
    labelSelector?: string;
    fieldSelector?: string;
  } = {},
): Informer<T> {
  const { namespace, labelSelector, fieldSelector, ...rest } = options;
  return new Informer<T>({
    name: options.name ?? resource.plural,
    listerWatcher: kubeListerWatcher<T>(client, resource, {
      namespace,
      labelSelector,
      fieldSelector,
      random: options.random,
    }),
    ...rest,
  });
}

/** Resolves when every informer has synced; rejects when signal aborts or timeoutMs passes first. */
export async function waitForCacheSync(
  informers: readonly Informer<KubernetesObject>[],
  options: { signal?: AbortSignal; timeoutMs?: number; clock?: Clock } = {},
): Promise<void> {
  const all = Promise.all(informers.map((i) => i.synced)).then(() => undefined);
  const guards: Promise<never>[] = [];
  const cleanup = new AbortController();
  if (options.timeoutMs !== undefined) {
    const clock = options.clock ?? systemClock;
    guards.push(
      delay(clock, options.timeoutMs, cleanup.signal).then(() => {
        const waiting = informers.filter((i) => !i.hasSynced()).map((i) => i.name);
        throw new Error(`caches not synced after ${options.timeoutMs} ms: ${waiting.join(', ')}`);
      }),
    );
  }
  if (options.signal) {
    const s = options.signal;
    guards.push(
      new Promise<never>((_, reject) => {
        if (s.aborted) reject(s.reason);
        s.addEventListener('abort', () => reject(s.reason), { once: true, signal: cleanup.signal });
      }),
    );
  }
  try {
    await Promise.race([all, ...guards]);
  } finally {
    cleanup.abort();
  }
}

/** Event handlers that enqueue the object's key (or keys computed from it) on every change: level-triggered. */
export function enqueueHandler<T extends KubernetesObject>(
  add: (key: string) => void,
  keysOf: (obj: T) => readonly string[] = (obj) => [objectKey(obj)],
): EventHandler<T> {
  const enqueue = (obj: T) => {
    for (const key of keysOf(obj)) add(key);
  };
  return { add: enqueue, update: (_old, obj) => enqueue(obj), delete: enqueue };
}
