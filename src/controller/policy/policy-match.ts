// Which SalvagePolicy governs a pod's image. Pure. Several policies may select the same pod: the highest priority wins,
// ties go to the alphabetically first name, so every controller replica and every reconcile picks the same one.
// System namespaces are never in scope. Where no policy selects a pod, the opt-in annotations clusters already carry
// (tote.dev/allow on the namespace and tote.dev/auto-salvage on the pod or its owner; api/reasons.ts) still opt it in,
// with tote's defaults.
import { Annotations, systemNamespaces } from '../../api/index.ts';
import type { V1Namespace, V1Pod } from '@kubernetes/client-node';
import type { SalvagePolicy } from '../../api/index.ts';
import { matchesSelector } from './label-selector.ts';
import { matchesRegistries } from './registry-patterns.ts';

export interface ScopeSubject {
  namespace: string;
  namespaceLabels: Record<string, string> | undefined;
  namespaceAnnotations: Record<string, string> | undefined;
  podLabels: Record<string, string> | undefined;
  podAnnotations: Record<string, string> | undefined;
  /** Annotations of the pod's controller owner chain (ReplicaSet, Deployment, ...), nearest first. */
  ownerAnnotations: Record<string, string>[];
  /** Normalised repository of the image, e.g. docker.io/library/nginx. */
  repository: string;
}

/** The subject for a pod's container image, from the pod and its (cached) namespace. */
export function scopeSubject(
  pod: V1Pod,
  namespace: V1Namespace | undefined,
  repository: string,
  ownerAnnotations: Record<string, string>[] = [],
): ScopeSubject {
  return {
    namespace: pod.metadata?.namespace ?? '',
    namespaceLabels: namespace?.metadata?.labels,
    namespaceAnnotations: namespace?.metadata?.annotations,
    podLabels: pod.metadata?.labels,
    podAnnotations: pod.metadata?.annotations,
    ownerAnnotations,
    repository,
  };
}

export type ScopeDecision =
  | { inScope: true; policy: SalvagePolicy }
  | { inScope: true; policy: undefined; via: 'annotations' }
  | { inScope: false; why: string };

/** Policies sorted by precedence: priority descending, then name ascending. */
export function byPrecedence(policies: readonly SalvagePolicy[]): SalvagePolicy[] {
  return [...policies].sort(
    (a, b) =>
      (b.spec.priority ?? 0) - (a.spec.priority ?? 0) ||
      (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? '', 'en'),
  );
}

export function policySelects(policy: SalvagePolicy, subject: ScopeSubject): boolean {
  return (
    policyCovers(policy, subject.namespaceLabels, subject.repository) &&
    matchesSelector(policy.spec.podSelector, subject.podLabels)
  );
}

/** Whether the policy is in force for images of `repository` in a namespace with these labels (pods aside). */
export function policyCovers(
  policy: SalvagePolicy,
  namespaceLabels: Record<string, string> | undefined,
  repository: string,
): boolean {
  return (
    matchesSelector(policy.spec.namespaceSelector, namespaceLabels) &&
    matchesRegistries(policy.spec.registries, repository)
  );
}

export function decideScope(policies: readonly SalvagePolicy[], subject: ScopeSubject): ScopeDecision {
  if (systemNamespaces.has(subject.namespace))
    return { inScope: false, why: `${subject.namespace} is a system namespace` };
  const policy = byPrecedence(policies.filter((p) => !p.metadata?.deletionTimestamp)).find((p) =>
    policySelects(p, subject),
  );
  if (policy) return { inScope: true, policy };
  if (optedInByAnnotations(subject)) return { inScope: true, policy: undefined, via: 'annotations' };
  return { inScope: false, why: 'no SalvagePolicy selects this pod and it is not opted in by annotations' };
}

function optedInByAnnotations(subject: ScopeSubject): boolean {
  if (subject.namespaceAnnotations?.[Annotations.allowNamespace] !== 'true') return false;
  return [subject.podAnnotations, ...subject.ownerAnnotations].some((a) => a?.[Annotations.autoSalvage] === 'true');
}
