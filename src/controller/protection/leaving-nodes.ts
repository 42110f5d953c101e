// Whether a node is on its way out of the cluster: what the tools that remove nodes put on it before they do. Its
// images are then to be copied elsewhere; the node itself keeps serving as a source until it is gone.
import type { V1Node } from '@kubernetes/client-node';

/** Taints that announce a node's removal, with who sets them. */
const removalTaints: ReadonlyMap<string, string> = new Map([
  ['ToBeDeletedByClusterAutoscaler', 'cluster-autoscaler scales it down'],
  ['karpenter.sh/disrupted', 'Karpenter disrupts it'],
  ['karpenter.sh/disruption', 'Karpenter disrupts it'],
  ['node.kubernetes.io/unschedulable', 'it is unschedulable'],
]);

/** Why `node` is leaving (cordoned, a removal taint), or undefined while it stays. */
export function leavingReason(node: V1Node): string | undefined {
  for (const taint of node.spec?.taints ?? []) {
    const why = removalTaints.get(taint.key);
    if (why !== undefined) return `tainted ${taint.key}: ${why}`;
  }
  if (node.spec?.unschedulable === true) return 'cordoned';
  return undefined;
}

/** The node's zone label (topology.kubernetes.io/zone), when it has one. */
export const nodeZone = (node: V1Node): string | undefined => node.metadata?.labels?.['topology.kubernetes.io/zone'];

/** DiskPressure=True: the kubelet is already evicting to free disk. */
export const underDiskPressure = (node: V1Node): boolean =>
  (node.status?.conditions ?? []).some((c) => c.type === 'DiskPressure' && c.status === 'True');
