// The controller's view of the node agents: who is alive (from their Leases), one gRPC client per agent, and a short
// cache of their answers about one image at a time, so that a burst of records for one image asks each agent once,
// not once per record, and never for a node's whole inventory.
//
// Concurrency: everything here runs on the event loop. Concurrent questions with the same key share one in-flight
// promise; clients are keyed by node and address, so an agent that moved gets a new client.
import type { V1Lease } from '@kubernetes/client-node';
import { endpointFromLease, isToteError } from '../api/index.ts';
import type { AgentEndpoint } from '../api/index.ts';
import { connectAgent } from '../agentapi/index.ts';
import type { AgentClient, AgentImage, TlsMaterial } from '../agentapi/index.ts';
import type { Clock } from '../runtime/clock.ts';

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
  /** Deadline of image queries: an agent slower than this counts as unreachable for the reconcile. */
  callTimeoutMs?: number;
  /** Builds a client; replaced in tests that count calls. */
  connect?: typeof connectAgent;
}

/** Bounds the answer cache on large clusters; stale entries are pruned when it grows past this. */
const maxCachedAnswers = 50_000;

export class AgentDirectory {
  readonly #leases: LeaseSource;
  readonly #tls: TlsMaterial;
  readonly #clock: Clock;
  readonly #ttl: number;
  readonly #timeout: number;
  readonly #connect: typeof connectAgent;
  readonly #clients = new Map<string, AgentClient>();
  readonly #answers = new Map<string, { at: number; value: Promise<unknown> }>();

  constructor(options: AgentDirectoryOptions) {
    this.#leases = options.leases;
    this.#tls = options.tls;
    this.#clock = options.clock;
    this.#ttl = options.inventoryTtlMs ?? 5_000;
    this.#timeout = options.callTimeoutMs ?? 10_000;
    this.#connect = options.connect ?? connectAgent;
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

  /** A client for the agent of `node`, or undefined when it has no live agent. */
  client(node: string): AgentClient | undefined {
    const endpoint = this.alive().get(node);
    return endpoint ? this.#clientFor(endpoint) : undefined;
  }

  #clientFor(endpoint: AgentEndpoint): AgentClient {
    const key = `${endpoint.node}@${endpoint.address}`;
    let client = this.#clients.get(key);
    if (!client) {
      for (const [other, stale] of this.#clients) {
        if (other.startsWith(`${endpoint.node}@`)) {
          stale.close();
          this.#clients.delete(other);
        }
      }
      client = this.#connect({
        address: endpoint.address,
        tls: this.#tls,
        server: { kind: 'agent', node: endpoint.node },
      });
      this.#clients.set(key, client);
    }
    return client;
  }

  /**
   * What `node` holds of image `digest` (undefined: no record of it), from a short cache unless `fresh`. Asks for the
   * one digest, not the node's whole inventory: cheap on a node with thousands of images, and one answer serves every
   * record needing that image on that node for the cache's lifetime.
   * @throws when the node has no live agent or it does not answer in time.
   */
  image(node: string, digest: string, options: { fresh?: boolean } = {}): Promise<AgentImage | undefined> {
    return this.#cached(`image|${node}|${digest}`, options.fresh, async () => {
      const images = await this.#live(node).listImages([digest], { timeoutMs: this.#timeout });
      return images.find((img) => img.digest === digest);
    });
  }

  /** The digest `node`'s own record of `reference` points at (undefined: none), cached like image(). */
  resolve(node: string, reference: string, options: { fresh?: boolean } = {}): Promise<string | undefined> {
    return this.#cached(`resolve|${node}|${reference}`, options.fresh, async () => {
      try {
        return (await this.#live(node).resolveTag(reference, { timeoutMs: this.#timeout })).digest;
      } catch (err) {
        if (isToteError(err, 'not-found')) return undefined;
        throw err;
      }
    });
  }

  #live(node: string): AgentClient {
    const client = this.client(node);
    if (!client) throw new Error(`node ${node} has no live agent`);
    return client;
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

  /** Forgets what is cached about a node (after an import or a removal changed it). */
  invalidate(node: string): void {
    for (const key of this.#answers.keys()) if (key.split('|')[1] === node) this.#answers.delete(key);
  }

  close(): void {
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
    this.#answers.clear();
  }
}
