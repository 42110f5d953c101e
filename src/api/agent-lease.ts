// How agents announce themselves: each agent keeps a coordination.k8s.io Lease named after its node, carrying its
// gRPC address. The controller finds agents by listing these Leases, the same way in a real cluster (a DaemonSet pod
// announces its pod IP) and on the local test cluster (a process announces 127.0.0.1:<port>), and a Lease whose renewal
// is overdue means the agent is down.

export const agentLeaseLabels = {
  component: 'app.kubernetes.io/component',
  node: 'tote.dev/node',
} as const;

export const agentLeaseComponent = 'tote-agent';
export const agentAddressAnnotation = 'tote.dev/agent-address';

/** Lease name for the agent of `node` (node names are DNS subdomains, so this is a valid name). */
export const agentLeaseName = (node: string): string => `tote-agent-${node}`.slice(0, 253);

/** Label selector matching every agent Lease. */
export const agentLeaseSelector = `${agentLeaseLabels.component}=${agentLeaseComponent}`;

export interface AgentEndpoint {
  node: string;
  /** host:port of the agent's gRPC server. */
  address: string;
  /** Milliseconds since the epoch until which the agent counts as alive. */
  aliveUntil: number;
}

/** Reads an agent Lease; undefined when it is not one of ours or lacks an address. */
export function endpointFromLease(lease: {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: { renewTime?: Date | string; leaseDurationSeconds?: number };
}): AgentEndpoint | undefined {
  const node = lease.metadata?.labels?.[agentLeaseLabels.node];
  const address = lease.metadata?.annotations?.[agentAddressAnnotation];
  if (!node || !address) return undefined;
  const renewed = lease.spec?.renewTime ? new Date(lease.spec.renewTime).getTime() : 0;
  return { node, address, aliveUntil: renewed + (lease.spec?.leaseDurationSeconds ?? 0) * 1000 };
}
