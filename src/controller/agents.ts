// The controller's view of the node agents: who is alive (from their Leases), one gRPC client per agent, and a short
// cache of each node's image inventory so that a burst of records for one image asks each agent once, not once per
// record.
//
// Concurrency: everything here runs on the event loop. Concurrent inventory requests for the same node share one
// in-flight promise; the cache is keyed by node and address, so an agent that moved gets a new client.
import type { V1Lease } from '@kubernetes/client-node';
import { endpointFromLease } from '../api/index.ts';
import type { AgentEndpoint } from '../api/index.ts';
import { connectAgent } from '../agentapi/index.ts';
import type { AgentClient, AgentImage, GetNodeInfoResponse, TlsMaterial } from '../agentapi/index.ts';
import type { Clock } from '../runtime/clock.ts';

/** Where the controller finds agent Leases; an informer in production, anything listable in tests. */
export interface LeaseSource {
  list(): V1Lease[];
}

export interface NodeInventory {
  node: string;
  info: GetNodeInfoResponse;
  images: AgentImage[];
  fetchedAt: number;
}

export interface AgentDirectoryOptions {
  leases: LeaseSource;
  tls: TlsMaterial;
  clock: Clock;
  /** How long an inventory answer is reused. */
  inventoryTtlMs?: number;
  /** Deadline of inventory calls: an agent slower than this counts as unreachable for the reconcile. */
  callTimeoutMs?: number;
  /** Builds a client; replaced in tests that count calls. */
  connect?: typeof connectAgent;
}

export class AgentDirectory {
  readonly #leases: LeaseSource;
  readonly #tls: TlsMaterial;
  readonly #clock: Clock;
  readonly #ttl: number;
  readonly #timeout: number;
  readonly #connect: typeof connectAgent;
  readonly #clients = new Map<string, AgentClient>();
  readonly #inventories = new Map<string, { at: number; value: Promise<NodeInventory> }>();

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

  /** The node's inventory, from the cache when fresh. Rejects when the agent is down or does not answer in time. */
  inventory(node: string, options: { fresh?: boolean } = {}): Promise<NodeInventory> {
    const now = this.#clock.now();
    const cached = this.#inventories.get(node);
    if (cached && !options.fresh && now - cached.at < this.#ttl) return cached.value;
    const client = this.client(node);
    if (!client) return Promise.reject(new Error(`node ${node} has no live agent`));
    const value = (async () => {
      const [info, images] = await Promise.all([
        client.getNodeInfo({ timeoutMs: this.#timeout }),
        client.listImages(undefined, { timeoutMs: this.#timeout }),
      ]);
      return { node, info, images, fetchedAt: this.#clock.now() };
    })();
    this.#inventories.set(node, { at: now, value });
    value.catch(() => {
      if (this.#inventories.get(node)?.value === value) this.#inventories.delete(node);
    });
    return value;
  }

  /** Forgets a node's cached inventory (after an import or a removal changed it). */
  invalidate(node: string): void {
    this.#inventories.delete(node);
  }

  close(): void {
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
    this.#inventories.clear();
  }
}

/** "linux/amd64" (plus "/v8" and the like) from an agent's platform message. */
export function platformString(p: { os: string; architecture: string; variant?: string } | undefined): string {
  if (!p) return 'unknown';
  return [p.os, p.architecture, p.variant].filter((part) => part !== undefined && part !== '').join('/');
}
