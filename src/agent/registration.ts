// The agent announces itself to the controller by keeping a coordination.k8s.io Lease named after its node, with its
// gRPC address in an annotation (contract in src/api/agent-lease.ts). Renewed on a timer; deleted on shutdown so the
// controller stops sending work at once instead of waiting for the Lease to lapse. A failed renewal is logged and
// retried at the next tick: an agent must keep serving transfers even when the API server is briefly away.
import type { KubernetesObject } from '@kubernetes/client-node';
import {
  agentAddressAnnotation,
  agentLeaseComponent,
  agentLeaseLabels,
  agentLeaseName,
  errorMessage,
  isToteError,
} from '../api/index.ts';
import type { Clock } from '../runtime/clock.ts';
import { resources } from '../runtime/kube.ts';
import type { KubeClient } from '../runtime/kube.ts';
import { microTime } from '../runtime/leader-election.ts';
import type { Logger } from '../runtime/logging.ts';

export interface RegistrationOptions {
  kube: KubeClient;
  namespace: string;
  node: string;
  /** host:port peers and the controller dial. */
  address: string;
  clock: Clock;
  log: Logger;
  renewIntervalMs?: number;
  leaseDurationSeconds?: number;
}

export class AgentRegistration {
  readonly #o: Required<RegistrationOptions>;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: RegistrationOptions) {
    this.#o = { renewIntervalMs: 10_000, leaseDurationSeconds: 40, ...options };
  }

  /** Registers once (throws if the API server refuses), then keeps renewing in the background. */
  async start(): Promise<void> {
    await this.renew();
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.renew()
        .catch((err: unknown) => this.#o.log.warn('agent lease renewal failed', { error: errorMessage(err) }))
        .finally(() => this.#schedule());
    }, this.#o.renewIntervalMs);
  }

  /** Creates or updates the Lease with a fresh renewTime and the current address. */
  async renew(): Promise<void> {
    const { kube, namespace, node, address, clock, leaseDurationSeconds } = this.#o;
    const name = agentLeaseName(node);
    const lease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name,
        namespace,
        labels: { [agentLeaseLabels.component]: agentLeaseComponent, [agentLeaseLabels.node]: node.slice(0, 63) },
        annotations: { [agentAddressAnnotation]: address },
      },
      spec: { holderIdentity: node, leaseDurationSeconds, renewTime: microTime(clock.now()) },
    };
    try {
      await kube.mergePatch(resources.leases, name, namespace, lease);
    } catch (err) {
      if (!isToteError(err, 'not-found')) throw err;
      await kube.create(resources.leases, lease as KubernetesObject);
    }
  }

  /** Stops renewing and deletes the Lease. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    try {
      await this.#o.kube.delete(resources.leases, agentLeaseName(this.#o.node), this.#o.namespace);
    } catch (err) {
      this.#o.log.warn('could not delete the agent lease', { error: errorMessage(err) });
    }
  }
}
