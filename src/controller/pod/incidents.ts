// From a stuck pod to the SalvageRecords it needs: one per (digest, node), or per (image reference, node) while only a
// tag is known. The pod reconciler uses this to create records; the record reconciler uses the same function to find
// the pods waiting on a record, so the two can never disagree about which pod belongs to which record. Pure.
import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { recordName } from '../../api/index.ts';
import type { StuckReason } from '../../api/index.ts';
import { detectStuckContainers, digestFromPod } from './detection.ts';
import { digestFromNodeImages } from './node-images.ts';

export interface Incident {
  recordName: string;
  namespace: string;
  node: string;
  container: string;
  image: string;
  reason: StuckReason;
  /** Known from the pod itself or the nodes' image lists; undefined while only the tag is known. */
  digest: string | undefined;
  message: string;
  /** The container's imagePullPolicy as the API server defaulted it (Always for `:latest` and untagged images). */
  imagePullPolicy: string | undefined;
}

export function incidentsOf(pod: V1Pod, nodes: readonly V1Node[]): Incident[] {
  const node = pod.spec?.nodeName;
  const namespace = pod.metadata?.namespace;
  if (!node || !namespace) return [];
  return detectStuckContainers(pod).map((stuck) => {
    const digest = digestFromPod(pod, stuck.container, stuck.image) ?? digestFromNodeImages(nodes, stuck.image);
    return {
      recordName: recordName({ digest, imageRef: stuck.image, node }),
      namespace,
      node,
      container: stuck.container,
      image: stuck.image,
      reason: stuck.reason,
      digest,
      message: stuck.message,
      imagePullPolicy: stuck.imagePullPolicy,
    };
  });
}
