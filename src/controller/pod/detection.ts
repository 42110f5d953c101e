// Detection: which containers of a pod are stuck because of their image, read from the status the kubelet reports.
// Pure: a pod in, a list of stuck containers out.
import type { V1ContainerStatus, V1Pod } from '@kubernetes/client-node';
import { StuckReasons, systemNamespaces } from '../../api/index.ts';
import type { StuckReason } from '../../api/index.ts';

export interface StuckContainer {
  /** Container name. */
  container: string;
  /** True for an init container. */
  init: boolean;
  /** The image as the pod spec names it. */
  image: string;
  reason: StuckReason;
  /** The kubelet's message, for records and Events. */
  message: string;
  /** For CreateContainerError: the digest containerd reported missing. */
  missingDigest?: string;
  imagePullPolicy?: string;
}

// The kubelet reports a missing blob only as text: containerd's "content digest sha256:…: not found", wrapped in
// "failed to resolve rootfs" (config) or "failed to extract layer" (a layer). There is no structured field for it, so
// this is the one place tote reads a message; other CreateContainerErrors (bad command, mounts) are not image problems.
const missingContentPattern = /content digest (sha256:[a-f0-9]{64})[^\n]*?: not found/;

/** Stuck containers of a pod, init containers first. System namespaces and terminating pods yield none. */
export function detectStuckContainers(pod: V1Pod): StuckContainer[] {
  if (systemNamespaces.has(pod.metadata?.namespace ?? '')) return [];
  if (pod.metadata?.deletionTimestamp) return [];
  const specImages = new Map<string, { image: string; pullPolicy?: string; init: boolean }>();
  for (const c of pod.spec?.initContainers ?? [])
    specImages.set(`init/${c.name}`, { image: c.image ?? '', pullPolicy: c.imagePullPolicy, init: true });
  for (const c of pod.spec?.containers ?? [])
    specImages.set(`main/${c.name}`, { image: c.image ?? '', pullPolicy: c.imagePullPolicy, init: false });
  const statuses: [string, V1ContainerStatus][] = [
    ...(pod.status?.initContainerStatuses ?? []).map((s): [string, V1ContainerStatus] => [`init/${s.name}`, s]),
    ...(pod.status?.containerStatuses ?? []).map((s): [string, V1ContainerStatus] => [`main/${s.name}`, s]),
  ];
  const stuck: StuckContainer[] = [];
  for (const [key, status] of statuses) {
    const waiting = status.state?.waiting;
    const spec = specImages.get(key);
    if (!waiting?.reason || !spec?.image) continue;
    const found = classify(waiting.reason, waiting.message ?? '');
    if (!found) continue;
    stuck.push({
      container: status.name,
      init: spec.init,
      image: spec.image,
      reason: found.reason,
      message: waiting.message ?? '',
      ...(found.missingDigest ? { missingDigest: found.missingDigest } : {}),
      ...(spec.pullPolicy ? { imagePullPolicy: spec.pullPolicy } : {}),
    });
  }
  return stuck;
}

function classify(reason: string, message: string): { reason: StuckReason; missingDigest?: string } | undefined {
  switch (reason) {
    case StuckReasons.ErrImagePull:
    case StuckReasons.ImagePullBackOff:
      return { reason };
    case StuckReasons.CreateContainerError: {
      const match = missingContentPattern.exec(message);
      return match?.[1] ? { reason, missingDigest: match[1] } : undefined;
    }
    default:
      return undefined;
  }
}

/** The controller that owns a pod (ReplicaSet, StatefulSet, Job, ...), if any: only such pods are deleted for restart. */
export function controllerOwner(pod: V1Pod): { kind: string; name: string; uid: string } | undefined {
  const owner = pod.metadata?.ownerReferences?.find((o) => o.controller === true);
  return owner ? { kind: owner.kind, name: owner.name, uid: owner.uid } : undefined;
}

/**
 * The digest a pod's status already names for a container, if any: a digest-pinned image reference, or the imageID the
 * kubelet recorded before (a restarted container keeps its old imageID).
 */
export function digestFromPod(pod: V1Pod, container: string, image: string): string | undefined {
  const pinned = /@(sha256:[a-f0-9]{64})$/.exec(image);
  if (pinned?.[1]) return pinned[1];
  const status = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])].find(
    (s) => s.name === container,
  );
  const fromId = /@(sha256:[a-f0-9]{64})$/.exec(status?.imageID ?? '');
  return fromId?.[1];
}
