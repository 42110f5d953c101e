// Applies the pin changes a protection survey planned (protection-plan.ts planPins) on the nodes, in the background: a
// reconcile never waits on an agent. A node whose containerd ignores pins set outside CRI (before 1.6.26 / 1.7.10 / 2.0)
// is said once per controller process, as a Warning Event on the Node (`kubectl describe node`) and in the log; tote
// then relies on copies there.
//
// Concurrency: event-loop only; one change per (node, digest) in flight, at most four at once. A change that fails is
// simply planned again by the next survey.
import { errorMessage } from '../../api/index.ts';
import type { Clock } from '../../runtime/clock.ts';
import { ConcurrencyLimiter } from '../../runtime/concurrency-limiter.ts';
import type { Logger } from '../../runtime/logging.ts';
import type { AgentDirectory } from '../agents/agents.ts';
import type { EventRecorder } from '../notify/events.ts';
import type { PinChange } from './protection-plan.ts';

export class PinKeeper {
  readonly #agents: Pick<AgentDirectory, 'client'>;
  readonly #events: EventRecorder;
  readonly #clock: Clock;
  readonly #log: Logger;
  /** How long a pin holds unless renewed. */
  readonly pinTtlMs: number;
  readonly #inflight = new Set<string>();
  readonly #limiter = new ConcurrencyLimiter(4);
  readonly #ignoredOn = new Set<string>();
  readonly #nodeUid: (node: string) => string;

  constructor(options: {
    agents: Pick<AgentDirectory, 'client'>;
    events: EventRecorder;
    clock: Clock;
    log: Logger;
    pinTtlMs: number;
    /** The Node's UID, so its Event shows in `kubectl describe node`. */
    nodeUid: (node: string) => string;
  }) {
    this.#nodeUid = options.nodeUid;
    this.#agents = options.agents;
    this.#events = options.events;
    this.#clock = options.clock;
    this.#log = options.log;
    this.pinTtlMs = options.pinTtlMs;
  }

  /** Starts the changes not already running; returns at once. */
  apply(changes: readonly PinChange[]): void {
    for (const change of changes) {
      const key = `${change.node}|${change.digest}`;
      if (this.#inflight.has(key)) continue;
      this.#inflight.add(key);
      void this.#limiter.run(() => this.#change(change)).finally(() => this.#inflight.delete(key));
    }
  }

  async #change(change: PinChange): Promise<void> {
    const client = this.#agents.client(change.node);
    if (!client) return;
    const until = change.pin ? new Date(this.#clock.now() + this.pinTtlMs) : undefined;
    try {
      const done = await client.pinImage({ digest: change.digest, ...(until ? { until } : {}) });
      this.#log.info(change.pin ? 'image pinned against image GC' : 'tote’s pin removed: the registry serves it', {
        node: change.node,
        digest: change.digest,
        records: done.names,
      });
      if (change.pin && !done.honoured) this.#sayIgnored(change.node);
    } catch (err) {
      this.#log.warn('pin change failed; the next survey tries again', {
        node: change.node,
        digest: change.digest,
        error: errorMessage(err),
      });
    }
  }

  #sayIgnored(node: string): void {
    if (this.#ignoredOn.has(node)) return;
    this.#ignoredOn.add(node);
    const message = `containerd on ${node} ignores pins set outside CRI (honoured from 1.6.26, 1.7.10 and 2.0): the kubelet's image GC may remove endangered images here; tote relies on copies on other nodes`;
    this.#log.warn(message, { node });
    void this.#events.record(
      {
        apiVersion: 'v1',
        kind: 'Node',
        name: node,
        namespace: 'default',
        uid: this.#nodeUid(node),
        clusterScoped: true,
      },
      'Warning',
      'PinsIgnored',
      message,
    );
  }
}
