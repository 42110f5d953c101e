// Transforms for informers: keep only the fields tote reads, so a cache of every Pod in a large cluster stays small
// (a full Pod is several KB of spec, managed fields and status that tote never looks at).

import type { KubernetesObject } from '@kubernetes/client-node';

type Json = Record<string, unknown>;

/** The metadata tote reads of any object. */
function trimMetadata(meta: Json | undefined): Json {
  if (!meta) return {};
  return pick(meta, [
    'name',
    'namespace',
    'uid',
    'labels',
    'annotations',
    'ownerReferences',
    'deletionTimestamp',
    'resourceVersion',
    'generation',
    'creationTimestamp',
  ]);
}

function pick(obj: Json, keys: readonly string[]): Json {
  const out: Json = {};
  for (const k of keys) if (obj[k] !== undefined) out[k] = obj[k];
  return out;
}

const trimContainers = (list: unknown): Json[] | undefined =>
  Array.isArray(list) ? list.map((c: Json) => pick(c, ['name', 'image', 'imagePullPolicy'])) : undefined;

const trimStatuses = (list: unknown): Json[] | undefined =>
  Array.isArray(list)
    ? list.map((s: Json) => pick(s, ['name', 'image', 'imageID', 'ready', 'restartCount', 'started', 'state']))
    : undefined;

/**
 * A Pod reduced to: metadata (name, namespace, uid, labels, annotations, ownerReferences, deletionTimestamp,
 * resourceVersion, creationTimestamp), spec.nodeName, containers and initContainers (name, image, imagePullPolicy),
 * status phase, container and init-container statuses (name, image, imageID, ready, restartCount,
 * started, state — the waiting reason and message are what detection reads).
 */
export function trimPod<T extends KubernetesObject>(pod: T): T {
  const p = pod as unknown as Json;
  const spec = (p.spec ?? {}) as Json;
  const status = (p.status ?? {}) as Json;
  const out: Json = {
    apiVersion: p.apiVersion,
    kind: p.kind,
    metadata: trimMetadata(p.metadata as Json | undefined),
    spec: dropUndefined({
      nodeName: spec.nodeName,
      containers: trimContainers(spec.containers) ?? [],
      initContainers: trimContainers(spec.initContainers),
    }),
    status: dropUndefined({
      phase: status.phase,
      containerStatuses: trimStatuses(status.containerStatuses),
      initContainerStatuses: trimStatuses(status.initContainerStatuses),
    }),
  };
  return out as unknown as T;
}

/**
 * A Node reduced to metadata, spec.unschedulable and taints, and status: images (digests held), conditions,
 * nodeInfo (container runtime version, architecture) and addresses.
 */
export function trimNode<T extends KubernetesObject>(node: T): T {
  const n = node as unknown as Json;
  const spec = (n.spec ?? {}) as Json;
  const status = (n.status ?? {}) as Json;
  return {
    apiVersion: n.apiVersion,
    kind: n.kind,
    metadata: trimMetadata(n.metadata as Json | undefined),
    spec: pick(spec, ['unschedulable', 'taints', 'podCIDR']),
    status: pick(status, ['images', 'conditions', 'nodeInfo', 'addresses']),
  } as unknown as T;
}

function dropUndefined(obj: Json): Json {
  for (const k of Object.keys(obj)) if (obj[k] === undefined) delete obj[k];
  return obj;
}

/**
 * A workload (Deployment, StatefulSet, DaemonSet) reduced to its metadata and its pod template's labels and containers
 * (name, image, imagePullPolicy): the images its pods want, for the protection (images wanted by a template whose
 * pods do not run, e.g. scaled to zero).
 */
export function trimWorkload<T extends KubernetesObject>(workload: T): T {
  const w = workload as unknown as Json;
  const template = (((w.spec ?? {}) as Json).template ?? {}) as Json;
  const templateSpec = (template.spec ?? {}) as Json;
  return {
    apiVersion: w.apiVersion,
    kind: w.kind,
    metadata: trimMetadata(w.metadata as Json | undefined),
    spec: {
      template: {
        metadata: pick((template.metadata ?? {}) as Json, ['labels', 'annotations']),
        spec: dropUndefined({
          containers: trimContainers(templateSpec.containers),
          initContainers: trimContainers(templateSpec.initContainers),
        }),
      },
    },
  } as unknown as T;
}
