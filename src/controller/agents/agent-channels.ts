// The controller's gRPC channels to agents: at most one per agent, opened on first use, closed after an idle spell and
// when too many are open, so a cluster of hundreds of nodes does not keep hundreds of mTLS connections (and their
// buffers) alive after one burst of questions.
//
// Concurrency: event-loop only. Every call borrows its channel for exactly as long as it runs (an import or a push for
// minutes), and only channels with no call running are ever closed; a channel closed while idle is opened again by the
// next call. Callers never hold a channel itself: handle() returns a client whose every method borrows anew.
import type { AgentEndpoint } from '../../api/index.ts';
import { connectAgent } from '../../agentapi/index.ts';
import type { AgentClient, RenewableTls, TlsMaterial } from '../../agentapi/index.ts';
import type { Clock, TimerHandle } from '../../runtime/clock.ts';

export interface AgentChannelsOptions {
  tls: RenewableTls;
  clock: Clock;
  /** Builds a client; replaced in tests that count channels and calls. */
  connect?: typeof connectAgent;
  /** A channel with no call for this long is closed. Default 30 s. */
  idleCloseMs?: number;
  /** Open channels above this close, least recently used first (those with calls running are kept). Default 64. */
  maxOpen?: number;
}

interface Channel {
  /** The agent's address when the channel was opened: an agent answering elsewhere gets a new channel. */
  readonly address: string;
  /** The controller's certificate when the channel was opened: a renewed one gets new channels. */
  readonly material: TlsMaterial;
  readonly client: AgentClient;
  /** Calls running on it; it is never closed while this is above 0. */
  inUse: number;
  lastUsed: number;
}

export class AgentChannels {
  readonly #tls: RenewableTls;
  readonly #clock: Clock;
  readonly #connect: typeof connectAgent;
  readonly #idleMs: number;
  readonly #maxOpen: number;
  /** By node, least recently used first (a use moves a channel to the end). */
  readonly #channels = new Map<string, Channel>();
  /** Replaced channels (the agent moved) still running a call: closed when it ends. */
  readonly #retired = new Set<Channel>();
  #sweep: TimerHandle | undefined;
  #closed = false;

  constructor(options: AgentChannelsOptions) {
    this.#tls = options.tls;
    this.#clock = options.clock;
    this.#connect = options.connect ?? connectAgent;
    this.#idleMs = options.idleCloseMs ?? 30_000;
    this.#maxOpen = options.maxOpen ?? 64;
  }

  /** Channels open now, retired ones still finishing a call included. */
  get open(): number {
    return this.#channels.size + this.#retired.size;
  }

  /** Runs `call` on the channel to `endpoint`'s agent, opening it if needed; the channel stays open while it runs. */
  async use<T>(endpoint: AgentEndpoint, call: (client: AgentClient) => Promise<T>): Promise<T> {
    const channel = this.#borrow(endpoint);
    try {
      return await call(channel.client);
    } finally {
      this.#giveBack(channel);
    }
  }

  /**
   * A client for `endpoint`'s agent that borrows the channel per call, for callers that keep a client across awaits
   * (imports, pushes, removals). Its close() does nothing: the channel belongs to this pool.
   */
  handle(endpoint: AgentEndpoint): AgentClient {
    return {
      address: endpoint.address,
      getNodeInfo: (o) => this.use(endpoint, (c) => c.getNodeInfo(o)),
      listImages: (digests, o) => this.use(endpoint, (c) => c.listImages(digests, o)),
      findImages: (references, o) => this.use(endpoint, (c) => c.findImages(references, o)),
      resolveTag: (reference, o) => this.use(endpoint, (c) => c.resolveTag(reference, o)),
      describePlan: (args, o) => this.use(endpoint, (c) => c.describePlan(args, o)),
      readBlob: (args, o) => this.#stream(endpoint, (c) => c.readBlob(args, o)),
      import: (args, o) => this.use(endpoint, (c) => c.import(args, o)),
      removeImage: (args, o) => this.use(endpoint, (c) => c.removeImage(args, o)),
      pinImage: (args, o) => this.use(endpoint, (c) => c.pinImage(args, o)),
      pushImage: (args, o) => this.use(endpoint, (c) => c.pushImage(args, o)),
      close: () => {},
    };
  }

  async *#stream<T>(endpoint: AgentEndpoint, open: (client: AgentClient) => AsyncIterable<T>): AsyncGenerator<T> {
    const channel = this.#borrow(endpoint);
    try {
      yield* open(channel.client);
    } finally {
      this.#giveBack(channel);
    }
  }

  #borrow(endpoint: AgentEndpoint): Channel {
    if (this.#closed) throw new Error('agent channels are closed (controller stopping)');
    const key = endpoint.node;
    let channel = this.#channels.get(key);
    if (channel) this.#channels.delete(key);
    if (channel && (channel.address !== endpoint.address || channel.material !== this.#tls.current)) {
      this.#retire(channel);
      channel = undefined;
    }
    if (!channel) {
      const material = this.#tls.current;
      const client = this.#connect({
        address: endpoint.address,
        tls: material,
        server: { kind: 'agent', node: endpoint.node },
      });
      channel = { address: endpoint.address, material, client, inUse: 0, lastUsed: 0 };
    }
    this.#channels.set(key, channel);
    channel.inUse++;
    channel.lastUsed = this.#clock.now();
    this.#evictOverCap();
    this.#armSweep();
    return channel;
  }

  #giveBack(channel: Channel): void {
    channel.inUse--;
    channel.lastUsed = this.#clock.now();
    if (channel.inUse === 0 && this.#retired.delete(channel)) channel.client.close();
  }

  /** The agent answers at a new address, or our certificate was renewed: the old channel goes, now or when its last call ends. */
  #retire(channel: Channel): void {
    if (channel.inUse === 0) channel.client.close();
    else this.#retired.add(channel);
  }

  #evictOverCap(): void {
    let excess = this.#channels.size - this.#maxOpen;
    for (const [key, channel] of this.#channels) {
      if (excess <= 0) return;
      if (channel.inUse > 0) continue;
      channel.client.close();
      this.#channels.delete(key);
      excess--;
    }
  }

  #armSweep(): void {
    if (this.#sweep !== undefined || this.#channels.size === 0) return;
    this.#sweep = this.#clock.setTimeout(
      () => {
        this.#sweep = undefined;
        this.#closeIdle();
        this.#armSweep();
      },
      Math.max(1, this.#idleMs / 2),
    );
  }

  #closeIdle(): void {
    const now = this.#clock.now();
    for (const [key, channel] of this.#channels) {
      if (channel.inUse > 0 || now - channel.lastUsed < this.#idleMs) continue;
      channel.client.close();
      this.#channels.delete(key);
    }
  }

  /** Closes every channel, calls running or not (shutdown); later calls fail. */
  close(): void {
    this.#closed = true;
    if (this.#sweep !== undefined) this.#clock.clearTimeout(this.#sweep);
    this.#sweep = undefined;
    for (const channel of [...this.#channels.values(), ...this.#retired]) channel.client.close();
    this.#channels.clear();
    this.#retired.clear();
  }
}
