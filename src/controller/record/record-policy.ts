// Which SalvagePolicy governs a record. A record acts with its policy's limits, backup target and credentials, so the
// policy must be one in force where the record lives: a record naming a policy that does not select its namespace (a
// hand-made record reaching for another team's backup credentials) is refused, and a record naming none gets the
// highest-priority policy that selects its namespace, as the pod reconciler would have chosen (tote's defaults when
// none does: the annotation opt-in and hand-made transfers in unselected namespaces). Pods are not looked at: a
// hand-made record may have none, and a record created for a pod was in scope when it was created.
import type { SalvagePolicy, SalvageRecord } from '../../api/index.ts';
import { ConditionReasons, systemNamespaces } from '../../api/index.ts';
import type { ControllerContext } from '../context.ts';
import { repositoryOf } from '../pod/node-images.ts';
import { defaultPolicy, effectivePolicy, PolicyFieldError } from '../policy/effective-policy.ts';
import type { EffectivePolicy } from '../policy/effective-policy.ts';
import { byPrecedence, policyCovers } from '../policy/policy-match.ts';

export type RecordPolicy =
  | { kind: 'policy'; policy: EffectivePolicy }
  /** The record may not use the policy it names: it ends NotActionable. */
  | { kind: 'refused'; reason: string; message: string }
  /** The policy has a field tote cannot read: the record waits until the policy is fixed (it says Ready=False). */
  | { kind: 'unusable'; policy: string; message: string };

export function recordPolicy(c: ControllerContext, record: SalvageRecord): RecordPolicy {
  const namespace = record.metadata?.namespace ?? '';
  const labels = c.caches.namespaces.getByName(namespace)?.metadata?.labels;
  const repository = repositoryOf(record.spec.imageRef) ?? '';
  const selects = (p: SalvagePolicy) => !systemNamespaces.has(namespace) && policyCovers(p, labels, repository);
  const named = record.spec.policyRef?.name;
  const chosen = named
    ? c.caches.policies.getByName(named)
    : byPrecedence(c.caches.policies.list().filter((p) => !p.metadata?.deletionTimestamp)).find(selects);
  if (chosen === undefined) return { kind: 'policy', policy: defaultPolicy };
  if (named && !selects(chosen)) {
    return {
      kind: 'refused',
      reason: ConditionReasons.PolicyNotInScope,
      message: `policy ${named} does not select namespace ${namespace} and ${repository || record.spec.imageRef}: a record may use only a policy in force where it lives`,
    };
  }
  try {
    return { kind: 'policy', policy: effectivePolicy(chosen) };
  } catch (err) {
    if (!(err instanceof PolicyFieldError)) throw err;
    return { kind: 'unusable', policy: chosen.metadata?.name ?? '', message: err.message };
  }
}
