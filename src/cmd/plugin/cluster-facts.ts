// What `tote status`, `tote why` and `tote doctor` read about tote's own processes, from the Leases they keep: the
// controller's leader Lease and one registration Lease per agent. Pure functions of the objects and the time.
import type { V1Lease, V1Node } from '@kubernetes/client-node';
import { agentLeaseName, endpointFromLease } from '../../api/index.ts';

export interface LeaderState {
  /** The holder's identity; undefined when nobody holds the Lease. */
  holder: string | undefined;
  /** Seconds since the last renewal. */
  renewedSecondsAgo: number;
  /** Renewed within its lease duration. */
  alive: boolean;
  leaseSeconds: number;
}

export function leaderOf(lease: V1Lease | undefined, now: number): LeaderState {
  const holder = lease?.spec?.holderIdentity || undefined;
  const renewed = lease?.spec?.renewTime ? new Date(lease.spec.renewTime).getTime() : 0;
  const leaseSeconds = lease?.spec?.leaseDurationSeconds ?? 15;
  return {
    holder,
    renewedSecondsAgo: Math.round((now - renewed) / 1000),
    alive: holder !== undefined && now - renewed <= leaseSeconds * 1000,
    leaseSeconds,
  };
}

export interface AgentState {
  node: string;
  /** host:port the agent announced; undefined without a Lease. */
  address: string | undefined;
  alive: boolean;
  /** Why not alive, in words; undefined when alive. */
  problem: string | undefined;
}

/** One entry per node that should run an agent (virtual nodes have no containerd), from the agents' Leases. */
export function agentsOf(nodes: readonly V1Node[], leases: readonly V1Lease[], now: number): AgentState[] {
  const byName = new Map(leases.map((l) => [l.metadata?.name ?? '', l]));
  return nodes
    .filter((n) => !isVirtual(n))
    .map((n): AgentState => {
      const node = n.metadata?.name ?? '';
      const lease = byName.get(agentLeaseName(node));
      const endpoint = lease ? endpointFromLease(lease) : undefined;
      if (!endpoint)
        return {
          node,
          address: undefined,
          alive: false,
          problem: 'no agent Lease: the DaemonSet has no ready pod here (taints? resources?)',
        };
      if (endpoint.aliveUntil < now) {
        const ago = Math.round((now - endpoint.aliveUntil) / 1000);
        return { node, address: endpoint.address, alive: false, problem: `agent Lease expired ${ago}s ago` };
      }
      return { node, address: endpoint.address, alive: true, problem: undefined };
    })
    .sort((a, b) => a.node.localeCompare(b.node));
}

/** kwok and virtual-kubelet nodes run no containerd: no agent belongs there. */
export const isVirtual = (node: V1Node): boolean =>
  node.metadata?.annotations?.['kwok.x-k8s.io/node'] === 'fake' || node.metadata?.labels?.type === 'virtual-kubelet';
