// The controller's view of the node agents: who is alive (from their Leases), channels to them (agent-channels.ts), and
// a short cache of their answers about one image at a time, so that a burst of records for one image asks each agent
// once, not once per record, and never for a node's whole inventory.
//
// Concurrency: everything here runs on the event loop. Concurrent questions with the same key share one in-flight
// promise. Questions about different images to one node asked within a short window, or while they wait for a free
// slot, travel together in one ListImages call. At most `maxInflightQueries` queries (ListImages, ResolveTag) run at
// once across all agents, the rest wait their turn in order, so locating an image on a large cluster is a steady
// trickle of calls, not hundreds of TLS handshakes at once. Imports, pushes and removals (client()) are not bounded
// here: policies bound transfers.
import type { V1Lease } from '@kubernetes/client-node';
import { endpointFromLease, isToteError } from '../api/index.ts';
import type { AgentEndpoint } from '../api/index.ts';
import type { AgentClient, AgentImage, connectAgent, TlsMaterial } from '../agentapi/index.ts';
import type { Clock } from '../runtime/clock.ts';
import { AgentChannels } from './agent-channels.ts';

/** Where the controller finds agent Leases; an informer in production, anything listable in tests. */
export interface LeaseSource {
  list(): V1Lease[];
}

export interface AgentDirectoryOptions {
  leases: LeaseSource;
  tls: TlsMaterial;
  clock: Clock;
  /** How long an agent's answer about an image is reused. */
  inventoryTtlMs?: number;
  /** Deadline of image queries, from when they are sent: an agent slower than this counts as unreachable. */
  callTimeoutMs?: number;
  /** Builds a client; replaced in tests that count calls. */
  connect?: typeof connectAgent;
  /** Queries running at once across all agents; more wait. Default 16. */
  maxInflightQueries?: number;
  /** How long questions to one node gather before they are sent as one call. Default 2 ms. */
  batchWindowMs?: number;
  /** A channel with no call for this long is closed. Default 30 s. */
  idleCloseMs?: number;
  /** Channels kept open at most (least recently used close first; channels running calls are kept). Default 64. */
  maxOpenChannels?: number;
}

/** How busy the directory is, for gauges. */
export interface AgentLoad {
  channelsOpen: number;
  queriesInflight: number;
  queriesQueued: number;
}

/** Bounds the answer cache on large clusters; stale entries are pruned when it grows past this. */
const maxCachedAnswers = 50_000;
/** Digests asked of one node in one call at most; more start another call. */
const maxDigestsPerCall = 256;

interface Waiter {
  resolve: (image: AgentImage | undefined) => void;
  reject: (err: unknown) => void;
}

/** Questions to one node not sent yet, by digest. */
interface Batch {
  node: string;
  questions: Map<string, Waiter[]>;
}

export class AgentDirectory {
  readonly #leases: LeaseSource;
  readonly #clock: Clock;
  readonly #ttl: number;
  readonly #timeout: number;
  readonly #windowMs: number;
  readonly #channels: AgentChannels;
  readonly #limiter: QueryLimiter;
  readonly #answers = new Map<string, { at: number; value: Promise<unknown> }>();
  readonly #fanOuts = new Map<string, Promise<unknown>>();
  /** Per node, the batch still taking questions. */
  readonly #collecting = new Map<string, Batch>();

  constructor(options: AgentDirectoryOptions) {
    this.#leases = options.leases;
    this.#clock = options.clock;
    this.#ttl = options.inventoryTtlMs ?? 5_000;
    this.#timeout = options.callTimeoutMs ?? 10_000;
    this.#windowMs = options.batchWindowMs ?? 2;
    this.#limiter = new QueryLimiter(options.maxInflightQueries ?? 16);
    this.#channels = new AgentChannels({
      tls: options.tls,
      clock: options.clock,
      ...(options.connect ? { connect: options.connect } : {}),
      ...(options.idleCloseMs !== undefined ? { idleCloseMs: options.idleCloseMs } : {}),
      ...(options.maxOpenChannels !== undefined ? { maxOpen: options.maxOpenChannels } : {}),
    });
  }

  /** Agents whose Lease is current, by node. */
  alive(): Map<string, AgentEndpoint> {
    const now = this.#clock.now();
    const out = new Map<string, AgentEndpoint>();
    for (const lease of this.#leases.list()) {
      const endpoint = endpointFromLease(lease);
      if (endpoint && endpoint.aliveUntil > now) out.set(endpoint.node, endpoint);
    }
    return out;
  }

  /**
   * A client for the agent of `node`, or undefined when it has no live agent. It may be kept across awaits and for
   * long calls (imports, pushes): each call opens the channel if it was closed meanwhile, and keeps it open while it
   * runs. Not bounded like image() and resolve().
   */
  client(node: string): AgentClient | undefined {
    const endpoint = this.alive().get(node);
    return endpoint ? this.#channels.handle(endpoint) : undefined;
  }

  /**
   * What `node` holds of image `digest` (undefined: no record of it), from a short cache unless `fresh`. Asks for the
   * one digest, not the node's whole inventory: cheap on a node with thousands of images, and one answer serves every
   * record needing that image on that node for the cache's lifetime. Questions to one node about several images
   * share one call.
   * @throws when the node has no live agent or it does not answer in time.
   */
  image(node: string, digest: string, options: { fresh?: boolean } = {}): Promise<AgentImage | undefined> {
    return this.#cached(`image|${node}|${digest}`, options.fresh, () => this.#ask(node, digest));
  }

  /** The digest `node`'s own record of `reference` points at (undefined: none), cached like image(). */
  resolve(node: string, reference: string, options: { fresh?: boolean } = {}): Promise<string | undefined> {
    return this.#cached(`resolve|${node}|${reference}`, options.fresh, async () => {
      try {
        const answer = await this.#limiter.run(() =>
          this.#query(node, (client) => client.resolveTag(reference, { timeoutMs: this.#timeout })),
        );
        return answer.digest;
      } catch (err) {
        if (isToteError(err, 'not-found')) return undefined;
        throw err;
      }
    });
  }

  /** Open channels and queries running or waiting now. */
  load(): AgentLoad {
    return {
      channelsOpen: this.#channels.open,
      queriesInflight: this.#limiter.running,
      queriesQueued: this.#limiter.waiting,
    };
  }

  #ask(node: string, digest: string): Promise<AgentImage | undefined> {
    let batch = this.#collecting.get(node);
    if (!batch) {
      const opened: Batch = { node, questions: new Map() };
      this.#collecting.set(node, opened);
      this.#clock.setTimeout(() => this.#send(opened), this.#windowMs);
      batch = opened;
    }
    const waiters = batch.questions.get(digest) ?? [];
    batch.questions.set(digest, waiters);
    const answer = new Promise<AgentImage | undefined>((resolve, reject) => waiters.push({ resolve, reject }));
    if (batch.questions.size >= maxDigestsPerCall) this.#collecting.delete(node);
    return answer;
  }

  /** Queues the batch for a slot; it takes questions until the slot is its own. */
  #send(batch: Batch): void {
    this.#limiter
      .run(() => {
        if (this.#collecting.get(batch.node) === batch) this.#collecting.delete(batch.node);
        const digests = [...batch.questions.keys()];
        return this.#query(batch.node, (client) => client.listImages(digests, { timeoutMs: this.#timeout }));
      })
      .then(
        (images) => {
          const byDigest = new Map(images.map((image) => [image.digest, image]));
          for (const [digest, waiters] of batch.questions) for (const w of waiters) w.resolve(byDigest.get(digest));
        },
        (err: unknown) => {
          for (const waiters of batch.questions.values()) for (const w of waiters) w.reject(err);
        },
      );
  }

  #query<T>(node: string, call: (client: AgentClient) => Promise<T>): Promise<T> {
    const endpoint = this.alive().get(node);
    if (!endpoint) return Promise.reject(new Error(`node ${node} has no live agent`));
    return this.#channels.use(endpoint, call);
  }

  /** Concurrent callers of one key share one call; failures are not cached. */
  #cached<T>(key: string, fresh: boolean | undefined, load: () => Promise<T>): Promise<T> {
    const now = this.#clock.now();
    const hit = this.#answers.get(key);
    if (hit && !fresh && now - hit.at < this.#ttl) return hit.value as Promise<T>;
    const value = load();
    this.#answers.set(key, { at: now, value });
    value.catch(() => {
      if (this.#answers.get(key)?.value === value) this.#answers.delete(key);
    });
    if (this.#answers.size > maxCachedAnswers) this.#prune(now);
    return value;
  }

  #prune(now: number): void {
    for (const [key, entry] of this.#answers) if (now - entry.at >= this.#ttl) this.#answers.delete(key);
  }

  /**
   * Runs a whole round of questions (say, "which nodes hold digest X") once for all concurrent callers asking it under
   * the same `key`; the shared answer is dropped when it settles, so a later caller asks again (through the per-node
   * answer cache above).
   */
  fanOut<T>(key: string, run: () => Promise<T>): Promise<T> {
    const running = this.#fanOuts.get(key);
    if (running !== undefined) return running as Promise<T>;
    const round = run().finally(() => this.#fanOuts.delete(key));
    this.#fanOuts.set(key, round);
    return round;
  }

  /** Forgets what is cached about a node (after an import or a removal changed it). */
  invalidate(node: string): void {
    for (const key of this.#answers.keys()) if (key.split('|')[1] === node) this.#answers.delete(key);
  }

  close(): void {
    this.#channels.close();
    this.#answers.clear();
  }
}

/** Runs at most `max` tasks at once; the others start in the order they came as slots free up. */
class QueryLimiter {
  readonly #max: number;
  readonly #queue: (() => void)[] = [];
  #running = 0;

  constructor(max: number) {
    this.#max = Math.max(1, max);
  }

  get running(): number {
    return this.#running;
  }

  get waiting(): number {
    return this.#queue.length;
  }

  run<T>(task: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const start = () => {
        this.#running++;
        const finish = () => {
          this.#running--;
          this.#queue.shift()?.();
        };
        new Promise<T>((r) => r(task())).then(
          (value) => {
            finish();
            resolve(value);
          },
          (err: unknown) => {
            finish();
            reject(err);
          },
        );
      };
      if (this.#running < this.#max) start();
      else this.#queue.push(start);
    });
  }
}
