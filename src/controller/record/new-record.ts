// A SalvageRecord as the controller creates it, for a stuck pod or for a protective copy: the labels lists select by
// (managed-by, target node, digest, policy) and, when a policy governs it, an owner reference so that deleting the
// policy garbage-collects its records.
import { apiVersion, digestLabelValue, Labels } from '../../api/index.ts';
import type { SalvagePolicy, SalvageRecord } from '../../api/index.ts';

export function newRecord(
  name: string,
  namespace: string,
  policy: SalvagePolicy | undefined,
  spec: Omit<SalvageRecord['spec'], 'policyRef'>,
): SalvageRecord {
  const labels: Record<string, string> = {
    [Labels.managedBy]: 'tote',
    [Labels.targetNode]: spec.targetNode.slice(0, 63),
  };
  if (spec.digest) labels[Labels.digest] = digestLabelValue(spec.digest);
  if (policy?.metadata?.name) labels[Labels.policy] = policy.metadata.name.slice(0, 63);
  return {
    apiVersion,
    kind: 'SalvageRecord',
    metadata: {
      name,
      namespace,
      labels,
      ...(policy?.metadata?.uid
        ? {
            ownerReferences: [
              {
                apiVersion,
                kind: 'SalvagePolicy',
                name: policy.metadata.name ?? '',
                uid: policy.metadata.uid,
                blockOwnerDeletion: false,
              },
            ],
          }
        : {}),
    },
    spec: { ...(policy?.metadata?.name ? { policyRef: { name: policy.metadata.name } } : {}), ...spec },
  };
}
