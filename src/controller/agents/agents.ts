// The controller's view of the node agents: who is alive (from their Leases), channels to them (agent-channels.ts), and
// a short cache of their answers about one image at a time, so that a burst of records for one image asks each agent
// once, not once per record, and never for a node's whole inventory.
//
// Concurrency: everything here runs on the event loop. Concurrent questions with the same key share one in-flight
// promise. Questions to one node asked within a short window, or while they wait for a free slot, travel together:
// the digests in one ListImages call, the tags in another (ListImages by names), side by side on the same channel. So
// a burst that asks all nodes about twenty tags makes one call per node, instead of twenty ResolveTag calls (each
// "not here" an error) and, on a cluster with more nodes than open channels, twenty TLS handshakes. At most
// `maxInflightQueries` batches run at once across all agents, the rest wait their turn in order, so locating an image
// on a large cluster is a steady trickle of calls, not hundreds of TLS handshakes at once. Imports, pushes and removals (client()) are not bounded
// here: policies bound transfers.
import type { V1Lease } from '@kubernetes/client-node';
import { endpointFromLease } from '../../api/index.ts';
import type { AgentEndpoint } from '../../api/index.ts';
import type { AgentClient, AgentImage, connectAgent, RenewableTls } from '../../agentapi/index.ts';
import { recordNameFor } from '../../registry/index.ts';
import type { Clock, TimerHandle } from '../../runtime/clock.ts';
import { ConcurrencyLimiter } from '../../runtime/concurrency-limiter.ts';
import { AgentChannels } from './agent-channels.ts';

/** Where the controller finds agent Leases; an informer in production, anything listable in tests. */
export interface LeaseSource {
  list(): V1Lease[];
  /** Moves whenever the Leases change (Informer.revision); without it the live agents are worked out on every call. */
  readonly revision?: number;
}

export interface AgentDirectoryOptions {
  leases: LeaseSource;
  tls: RenewableTls;
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
  /** A channel with no call for this long is closed. Default: AgentChannels' (agent-channels.ts). */
  idleCloseMs?: number;
  /** Channels kept open at most (least recently used close first; channels running calls are kept). Default: AgentChannels'. */
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
/** Questions (digests and tags) sent to one node in one batch at most; more start another batch. */
const maxQuestionsPerBatch = 256;
/** How long "node N's record of a tag points at digest D" hints where D is (holderHints). */
const holderHintTtlMs = 60_000;
/** How long "tote has just imported D onto node N" hints where D is: a fan-out to many nodes can take minutes. */
const importedHintTtlMs = 15 * 60_000;
/** Bounds the holder hints: the least recently hinted digest goes when more than this are hinted. */
const maxHintedDigests = 10_000;

interface Waiter<T> {
  resolve(value: T): void;
  reject(err: unknown): void;
}

/** What a round of one question to many nodes found: each node's answer, or why it gave none. */
export interface RoundAnswers<T> {
  answers: Map<string, T>;
  failed: Map<string, unknown>;
}

/** Questions to one node not sent yet: images by digest, tags by reference. */
interface Batch {
  node: string;
  digests: Map<string, Waiter<AgentImage | undefined>[]>;
  references: Map<string, Waiter<string | undefined>[]>;
}

interface CachedAnswer {
  at: number;
  value: Promise<unknown>;
}

export class AgentDirectory {
  readonly #leases: LeaseSource;
  readonly #clock: Clock;
  readonly #ttl: number;
  readonly #timeout: number;
  readonly #windowMs: number;
  readonly #channels: AgentChannels;
  readonly #limiter: ConcurrencyLimiter;
  /** By node, then question ("image|<digest>", "resolve|<reference>"): invalidating a node is one delete. */
  readonly #answers = new Map<string, Map<string, CachedAnswer>>();
  #answerCount = 0;
  /** Drops expired answers a cache lifetime after they were stored, so a burst's thousands do not outstay it. */
  #pruneTimer: TimerHandle | undefined;
  readonly #fanOuts = new Map<string, Promise<unknown>>();
  /** Per node, the batch still taking questions. */
  readonly #collecting = new Map<string, Batch>();
  /** By digest: the nodes whose record of a tag pointed at it lately, and when they said so. */
  /** digest → node → when the hint expires. */
  readonly #holderHints = new Map<string, Map<string, number>>();
  /** digest → node tote imported it onto → until when that counts as recent. */
  readonly #received = new Map<string, Map<string, number>>();
  /** alive() as last worked out, valid while the Leases have not changed and no endpoint in it has expired. */
  #alive: { revision: number; validUntil: number; endpoints: ReadonlyMap<string, AgentEndpoint> } | undefined;

  constructor(options: AgentDirectoryOptions) {
    this.#leases = options.leases;
    this.#clock = options.clock;
    this.#ttl = options.inventoryTtlMs ?? 5_000;
    this.#timeout = options.callTimeoutMs ?? 10_000;
    this.#windowMs = options.batchWindowMs ?? 2;
    this.#limiter = new ConcurrencyLimiter(options.maxInflightQueries ?? 16);
    this.#channels = new AgentChannels({
      tls: options.tls,
      clock: options.clock,
      ...(options.connect ? { connect: options.connect } : {}),
      ...(options.idleCloseMs !== undefined ? { idleCloseMs: options.idleCloseMs } : {}),
      ...(options.maxOpenChannels !== undefined ? { maxOpen: options.maxOpenChannels } : {}),
    });
  }

  /**
   * Agents whose Lease is current, by node. Every query asks this, so on a cluster of hundreds of nodes it is worked
   * out again only when a Lease changed or one of the endpoints expired, not per call.
   */
  alive(): ReadonlyMap<string, AgentEndpoint> {
    const now = this.#clock.now();
    const revision = this.#leases.revision;
    const memo = this.#alive;
    if (memo && revision !== undefined && memo.revision === revision && now < memo.validUntil) return memo.endpoints;
    const endpoints = new Map<string, AgentEndpoint>();
    let validUntil = Infinity;
    for (const lease of this.#leases.list()) {
      const endpoint = endpointFromLease(lease);
      if (!endpoint || endpoint.aliveUntil <= now) continue;
      endpoints.set(endpoint.node, endpoint);
      validUntil = Math.min(validUntil, endpoint.aliveUntil);
    }
    if (revision !== undefined) this.#alive = { revision, validUntil, endpoints };
    return endpoints;
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
    return this.#cached(node, `image|${digest}`, options.fresh, () =>
      this.#ask(node, (batch) => batch.digests, digest),
    );
  }

  /**
   * image() asked of every node in `nodes` at once. A round keeps one small slot per node while it waits, not a
   * promise chain: a burst asks images times nodes questions at once (bench-scale: 20 images of 500 nodes), and a
   * promise per question made them a large share of the controller's heap at the burst's peak.
   */
  imageEverywhere(
    nodes: readonly string[],
    digest: string,
    options: { fresh?: boolean } = {},
  ): Promise<RoundAnswers<AgentImage | undefined>> {
    return this.#round(nodes, `image|${digest}`, options.fresh, (batch) => batch.digests, digest);
  }

  /**
   * The digest each node's own record of `reference` points at (undefined: none), asked of every node in `nodes` as a
   * round (see imageEverywhere) and cached like image(). An answer also hints that the node holds that digest
   * (holderHints).
   */
  resolveEverywhere(
    nodes: readonly string[],
    reference: string,
    options: { fresh?: boolean } = {},
  ): Promise<RoundAnswers<string | undefined>> {
    const name = recordNameFor(reference);
    return this.#round(
      nodes,
      `resolve|${name}`,
      options.fresh,
      (batch) => batch.references,
      name,
      (node, digest) => {
        if (digest) this.#hint(digest, node);
      },
    );
  }

  /**
   * Nodes whose record of some tag pointed at `digest` within the last minute: where to look for the image first,
   * before asking every agent. Only a hint: the node's copy may be incomplete or gone since.
   */
  holderHints(digest: string): string[] {
    const now = this.#clock.now();
    const nodes = this.#holderHints.get(digest);
    if (!nodes) return [];
    return [...nodes].filter(([, until]) => until > now).map(([node]) => node);
  }

  /** `node` holds `digest` now (tote has just imported it there): look there first, and let it serve the next. */
  noteHolder(digest: string, node: string): void {
    this.#hint(digest, node, importedHintTtlMs);
    const nodes = this.#received.get(digest) ?? new Map<string, number>();
    nodes.set(node, this.#clock.now() + importedHintTtlMs);
    this.#received.delete(digest);
    this.#received.set(digest, nodes);
    if (this.#received.size > maxHintedDigests) {
      const oldest = this.#received.keys().next().value;
      if (oldest !== undefined) this.#received.delete(oldest);
    }
  }

  /** Nodes tote imported `digest` onto within the last minutes (noteHolder). */
  receivedBy(digest: string): Set<string> {
    const now = this.#clock.now();
    return new Set([...(this.#received.get(digest) ?? [])].filter(([, until]) => until > now).map(([node]) => node));
  }

  /** `node` failed to serve `digest`: it is no longer trusted as a node that received it. */
  forgetReceived(digest: string, node: string): void {
    this.#received.get(digest)?.delete(node);
  }

  #hint(digest: string, node: string, ttlMs = holderHintTtlMs): void {
    const nodes = this.#holderHints.get(digest) ?? new Map<string, number>();
    const until = this.#clock.now() + ttlMs;
    nodes.set(node, Math.max(until, nodes.get(node) ?? 0));
    // Re-inserted last, so the map runs from the least recently hinted digest: that one goes when it is full (hints
    // are an optimisation; losing one costs a wider search, never a wrong answer).
    this.#holderHints.delete(digest);
    this.#holderHints.set(digest, nodes);
    if (this.#holderHints.size > maxHintedDigests) {
      const oldest = this.#holderHints.keys().next().value;
      if (oldest !== undefined) this.#holderHints.delete(oldest);
    }
  }

  /** Answers held in the cache, expired ones not yet pruned included. */
  get cachedAnswers(): number {
    return this.#answerCount;
  }

  /** Open channels and queries running or waiting now. */
  load(): AgentLoad {
    return {
      channelsOpen: this.#channels.open,
      queriesInflight: this.#limiter.running,
      queriesQueued: this.#limiter.waiting,
    };
  }

  /** Asks `node` one question through its batch; the answer's promise. */
  #ask<T>(node: string, kind: (batch: Batch) => Map<string, Waiter<T>[]>, question: string): Promise<T> {
    return new Promise<T>((resolve, reject) => this.#enqueue(node, kind, question, { resolve, reject }));
  }

  /**
   * One question to each node, answered from the cache where it is fresh enough and through the nodes' batches
   * otherwise; new answers are cached (and `onAnswer` told) as they arrive. Settles when every node has answered or
   * failed.
   */
  #round<T>(
    nodes: readonly string[],
    cacheKey: string,
    fresh: boolean | undefined,
    kind: (batch: Batch) => Map<string, Waiter<T>[]>,
    question: string,
    onAnswer?: (node: string, value: T) => void,
  ): Promise<RoundAnswers<T>> {
    const unique = [...new Set(nodes)];
    return new Promise((resolve) => {
      const round = new Round<T>(unique.length, resolve, (node, value) => {
        this.#store(node, cacheKey, Promise.resolve(value));
        onAnswer?.(node, value);
      });
      for (const node of unique) {
        const hit = fresh ? undefined : this.#hit(node, cacheKey);
        if (hit)
          hit.then(
            (value) => round.answered(node, value as T, false),
            (err: unknown) => round.failed(node, err),
          );
        else this.#enqueue(node, kind, question, new RoundSlot(round, node));
      }
    });
  }

  /** Adds a question to `node`'s open batch (opening one if needed); `kind` picks the batch's digests or tags. */
  #enqueue<T>(node: string, kind: (batch: Batch) => Map<string, Waiter<T>[]>, question: string, waiter: Waiter<T>) {
    let batch = this.#collecting.get(node);
    if (!batch) {
      const opened: Batch = { node, digests: new Map(), references: new Map() };
      this.#collecting.set(node, opened);
      this.#clock.setTimeout(() => this.#send(opened), this.#windowMs);
      batch = opened;
    }
    const questions = kind(batch);
    const waiters = questions.get(question) ?? [];
    questions.set(question, waiters);
    waiters.push(waiter);
    if (batch.digests.size + batch.references.size >= maxQuestionsPerBatch) this.#collecting.delete(node);
  }

  /**
   * Queues the batch for a slot; it takes questions until the slot is its own. Then one ListImages for its digests
   * and one for its tags go out together on the node's channel. A call's failure fails its own questions; a node
   * without a live agent fails them all.
   */
  #send(batch: Batch): void {
    const options = { timeoutMs: this.#timeout };
    this.#limiter
      .run(() => {
        if (this.#collecting.get(batch.node) === batch) this.#collecting.delete(batch.node);
        return this.#query(batch.node, (client) =>
          Promise.all([
            // A tag resolves to the image one of whose records it names; a tag named by none is not here.
            answerAll(
              batch.references,
              (names) => client.findImages(names, options),
              (images) => {
                const digestOf = new Map(images.flatMap((image) => image.names.map((n) => [n, image.digest] as const)));
                return (name) => digestOf.get(name);
              },
            ),
            answerAll(
              batch.digests,
              (digests) => client.listImages(digests, options),
              (images) => {
                const byDigest = new Map(images.map((image) => [image.digest, image]));
                return (digest) => byDigest.get(digest);
              },
            ),
          ]),
        );
      })
      .catch((err: unknown) => {
        // Reached only when no call could be made: a waiter already answered ignores this.
        for (const waiters of [...batch.digests.values(), ...batch.references.values()]) fail(waiters, err);
      });
  }

  #query<T>(node: string, call: (client: AgentClient) => Promise<T>): Promise<T> {
    const endpoint = this.alive().get(node);
    if (!endpoint) return Promise.reject(new Error(`node ${node} has no live agent`));
    return this.#channels.use(endpoint, call);
  }

  /** Concurrent callers of one question to a node share one call; failures are not cached. */
  #cached<T>(node: string, key: string, fresh: boolean | undefined, load: () => Promise<T>): Promise<T> {
    const hit = fresh ? undefined : this.#hit(node, key);
    if (hit) return hit as Promise<T>;
    const value = load();
    this.#store(node, key, value);
    value.catch(() => {
      const current = this.#answers.get(node);
      if (current?.get(key)?.value === value) {
        current.delete(key);
        this.#answerCount--;
      }
    });
    return value;
  }

  /** The cached answer to `key` from `node`, if younger than the cache's lifetime. */
  #hit(node: string, key: string): Promise<unknown> | undefined {
    const hit = this.#answers.get(node)?.get(key);
    return hit && this.#clock.now() - hit.at < this.#ttl ? hit.value : undefined;
  }

  #store(node: string, key: string, value: Promise<unknown>): void {
    const now = this.#clock.now();
    let answers = this.#answers.get(node);
    if (!answers) this.#answers.set(node, (answers = new Map()));
    if (!answers.has(key)) this.#answerCount++;
    answers.set(key, { at: now, value });
    if (this.#answerCount > maxCachedAnswers) this.#prune(now);
    this.#armPrune();
  }

  #armPrune(): void {
    if (this.#pruneTimer !== undefined || this.#answerCount === 0) return;
    this.#pruneTimer = this.#clock.setTimeout(() => {
      this.#pruneTimer = undefined;
      this.#prune(this.#clock.now());
      this.#armPrune();
    }, this.#ttl);
  }

  #prune(now: number): void {
    for (const [node, answers] of this.#answers) {
      for (const [key, entry] of answers) {
        if (now - entry.at < this.#ttl) continue;
        answers.delete(key);
        this.#answerCount--;
      }
      if (answers.size === 0) this.#answers.delete(node);
    }
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
    this.#answerCount -= this.#answers.get(node)?.size ?? 0;
    this.#answers.delete(node);
  }

  close(): void {
    if (this.#pruneTimer !== undefined) this.#clock.clearTimeout(this.#pruneTimer);
    this.#pruneTimer = undefined;
    this.#channels.close();
    this.#answers.clear();
    this.#answerCount = 0;
  }
}

/**
 * Asks one call for a group of questions (none: no call) and settles each question from its answer, or fails them all
 * with its error.
 */
async function answerAll<T>(
  questions: Map<string, Waiter<T>[]>,
  call: (asked: string[]) => Promise<AgentImage[]>,
  answerOf: (images: AgentImage[]) => (question: string) => T,
): Promise<void> {
  if (questions.size === 0) return;
  try {
    const answer = answerOf(await call([...questions.keys()]));
    for (const [question, waiters] of questions) for (const w of waiters) w.resolve(answer(question));
  } catch (err) {
    for (const waiters of questions.values()) fail(waiters, err);
  }
}

function fail(waiters: readonly { reject: (err: unknown) => void }[], err: unknown): void {
  for (const w of waiters) w.reject(err);
}

/** A round's tally: each node's answer or failure, counted once (a call's late failure after an answer is ignored). */
class Round<T> {
  readonly #result: RoundAnswers<T> = { answers: new Map(), failed: new Map() };
  readonly #done: (result: RoundAnswers<T>) => void;
  readonly #onAnswer: (node: string, value: T) => void;
  #left: number;

  constructor(count: number, done: (result: RoundAnswers<T>) => void, onAnswer: (node: string, value: T) => void) {
    this.#left = count;
    this.#done = done;
    this.#onAnswer = onAnswer;
    if (count === 0) done(this.#result);
  }

  /** `node` answered; `fromAgent` is false for an answer taken from the cache (not cached again). */
  answered(node: string, value: T, fromAgent: boolean): void {
    if (!this.#first(node)) return;
    this.#result.answers.set(node, value);
    if (fromAgent) this.#onAnswer(node, value);
    this.#count();
  }

  failed(node: string, err: unknown): void {
    if (!this.#first(node)) return;
    this.#result.failed.set(node, err);
    this.#count();
  }

  #first(node: string): boolean {
    return !this.#result.answers.has(node) && !this.#result.failed.has(node);
  }

  #count(): void {
    if (--this.#left === 0) this.#done(this.#result);
  }
}

/** A round's place in one node's batch: a small object with the round's methods, no closures of its own. */
class RoundSlot<T> implements Waiter<T> {
  readonly #round: Round<T>;
  readonly #node: string;

  constructor(round: Round<T>, node: string) {
    this.#round = round;
    this.#node = node;
  }

  resolve(value: T): void {
    this.#round.answered(this.#node, value, true);
  }

  reject(err: unknown): void {
    this.#round.failed(this.#node, err);
  }
}
