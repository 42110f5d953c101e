// Pods → SalvageRecords. For a pod stuck on its image and in scope of a policy (or opted in by annotation,
// api/reasons.ts), make sure the record for each (digest, node) exists; a record that already exists is re-enqueued so it
// notices the pod joining. Level-triggered: it never asks whether the pod was added or modified, only what it is now.
import type { KubernetesObject, V1Pod } from '@kubernetes/client-node';
import { Annotations, SalvageRecordResource } from '../../api/index.ts';
import type { SalvagePolicy } from '../../api/index.ts';
import { newRecord } from '../record/new-record.ts';
import { resources } from '../../runtime/kube.ts';
import type { KubeClient, ResourceType } from '../../runtime/kube.ts';
import type { ReconcileContext, ReconcileResult } from '../../runtime/reconcile-loop.ts';
import { Indexes } from '../context.ts';
import type { ControllerContext } from '../context.ts';
import { incidentsOf } from './incidents.ts';
import type { Incident } from './incidents.ts';
import { repositoryOf } from './node-images.ts';
import { decideScope, scopeSubject } from '../policy/policy-match.ts';

const ownerKinds: Record<string, ResourceType> = {
  ReplicaSet: resources.replicaSets,
  Deployment: resources.deployments,
  StatefulSet: resources.statefulSets,
  DaemonSet: resources.daemonSets,
};
/** Pod → ReplicaSet → Deployment is as deep as workload ownership goes in practice. */
const maxOwnerDepth = 2;

export async function reconcilePod(
  c: ControllerContext,
  key: string,
  ctx: ReconcileContext,
): Promise<ReconcileResult | void> {
  const pod = c.caches.pods.get(key);
  if (!pod) return;
  const incidents = incidentsOf(pod, c.caches.nodes.list());
  if (incidents.length === 0) return;
  const namespace = c.caches.namespaces.getByName(pod.metadata?.namespace ?? '');
  const policies = c.caches.policies.list();
  for (const incident of incidents) {
    const repository = repositoryOf(incident.image);
    if (!repository) {
      ctx.log.debug('image reference is malformed; not tote’s to fix', { image: incident.image });
      continue;
    }
    const subject = scopeSubject(pod, namespace, repository);
    let scope = decideScope(policies, subject);
    if (!scope.inScope && subject.namespaceAnnotations?.[Annotations.allowNamespace] === 'true') {
      // Only the annotation opt-in needs the owners, so they are fetched only for namespaces that allow it.
      subject.ownerAnnotations = await ownerAnnotations(c.kube, pod);
      scope = decideScope(policies, subject);
    }
    if (!scope.inScope) {
      ctx.log.debug('stuck pod out of scope', { container: incident.container, why: scope.why });
      continue;
    }
    await ensureRecord(c, pod, incident, scope.policy, ctx);
  }
}

async function ensureRecord(
  c: ControllerContext,
  pod: V1Pod,
  incident: Incident,
  policy: SalvagePolicy | undefined,
  ctx: ReconcileContext,
): Promise<void> {
  const existing = existingRecord(c, incident);
  if (existing) {
    c.enqueueRecord(existing);
    return;
  }
  const key = `${incident.namespace}/${incident.recordName}`;
  const record = newRecord(incident.recordName, incident.namespace, policy, {
    podRef: { name: pod.metadata?.name ?? '', uid: pod.metadata?.uid ?? '' },
    container: incident.container,
    imageRef: incident.image,
    ...(incident.digest ? { digest: incident.digest } : {}),
    targetNode: incident.node,
    reason: incident.reason,
  });
  const { created } = await c.kube.createOrGet(SalvageRecordResource, record as KubernetesObject);
  if (created) {
    c.metrics.detected.inc({ reason: incident.reason });
    ctx.log.info('stuck pod detected; record created', {
      record: key,
      image: incident.image,
      node: incident.node,
      reason: incident.reason,
      policy: policy?.metadata?.name ?? '(annotations)',
    });
  }
  c.enqueueRecord(key);
}

/**
 * The record this incident joins: the one of its name, or one for the same image on the same node under the other key
 * (a tag's record made before its digest was known, or the reverse), so a digest learned later never splits an
 * incident in two.
 */
function existingRecord(c: ControllerContext, incident: Incident): string | undefined {
  const byName = `${incident.namespace}/${incident.recordName}`;
  if (c.caches.records.get(byName)) return byName;
  const same = c.caches.records
    .byIndex(Indexes.recordsByNode, incident.node)
    .find(
      (r) =>
        r.metadata?.namespace === incident.namespace &&
        (r.spec.imageRef === incident.image ||
          (incident.digest !== undefined && (r.spec.digest ?? r.status?.digest) === incident.digest)),
    );
  return same ? `${incident.namespace}/${same.metadata?.name}` : undefined;
}

/** Annotations of the pod's controller owners, nearest first (ReplicaSet, then its Deployment): single GETs. */
export async function ownerAnnotations(kube: KubeClient, pod: V1Pod): Promise<Record<string, string>[]> {
  const out: Record<string, string>[] = [];
  let current: KubernetesObject = pod;
  for (let depth = 0; depth < maxOwnerDepth; depth++) {
    const owner = current.metadata?.ownerReferences?.find((o) => o.controller === true);
    const type = owner ? ownerKinds[owner.kind] : undefined;
    if (!owner || !type) break;
    const next = await kube.getOrUndefined<KubernetesObject>(type, owner.name, pod.metadata?.namespace);
    if (!next) break;
    out.push(next.metadata?.annotations ?? {});
    current = next;
  }
  return out;
}
