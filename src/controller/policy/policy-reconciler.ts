// SalvagePolicies: check what the schema cannot (the Secrets a policy names exist and parse), publish Ready and the
// record counters in status. Never writes spec: the policy belongs to whoever applies it (GitOps), and a controller
// that wrote spec would fight them.
import {
  ConditionReasons,
  ConditionTypes,
  errorMessage,
  isFinalPhase,
  Phases,
  removeCondition,
  SalvagePolicyResource,
  setCondition,
} from '../../api/index.ts';
import type {
  Condition,
  SalvagePolicy,
  SalvagePolicyCounters,
  SalvagePolicyStatus,
  SecretReference,
} from '../../api/index.ts';
import { credentialsFromSecret } from '../../registry/index.ts';
import type { ReconcileContext, ReconcileResult } from '../../runtime/reconcile-loop.ts';
import { Indexes } from '../context.ts';
import { effectivePolicy, PolicyFieldError } from './effective-policy.ts';
import type { ControllerContext } from '../context.ts';

/** A policy whose Secret is missing is checked again this often (tote does not watch Secrets: it may only get them). */
const recheckMs = 60_000;

export async function reconcilePolicy(
  c: ControllerContext,
  name: string,
  ctx: ReconcileContext,
): Promise<ReconcileResult | void> {
  const policy = c.caches.policies.getByName(name);
  if (!policy || policy.metadata?.deletionTimestamp) return;
  const problem = await findProblem(c, policy);
  const now = new Date(c.clock.now());
  const generation = policy.metadata?.generation;
  const conditions = policyConditions(policy.status?.conditions, problem, now).map((cond) =>
    generation !== undefined ? { ...cond, observedGeneration: generation } : cond,
  );
  const status: SalvagePolicyStatus = {
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
    conditions,
    counters: counters(c, name),
  };
  // What the last survey in this process found; a new leader keeps the one written before until it has surveyed.
  const survey = policy.spec.protection
    ? (c.protection.surveys.get(name) ?? policy.status?.protectionSurvey)
    : undefined;
  if (survey) status.protectionSurvey = survey;
  if (JSON.stringify(status) !== JSON.stringify(policy.status ?? {})) {
    await c.kube.updateStatus(SalvagePolicyResource, { ...policy, status });
    if (problem) ctx.log.warn('policy not ready', { reason: problem.reason, message: problem.message });
  }
  return problem ? { requeueAfterMs: recheckMs } : undefined;
}

/**
 * Ready, and kstatus' Stalled while Ready is False. A policy is checked in one pass, so it is never Reconciling: an
 * observedGeneration behind metadata.generation is what says the controller has not looked at the change yet.
 */
export function policyConditions(
  previous: readonly Condition[] | undefined,
  problem: { reason: string; message: string } | undefined,
  now: Date,
): Condition[] {
  if (!problem) {
    const ready = setCondition(
      previous,
      {
        type: ConditionTypes.Ready,
        status: 'True',
        reason: ConditionReasons.PolicyAccepted,
        message: 'policy is in force',
      },
      now,
    );
    return removeCondition(ready, ConditionTypes.Stalled);
  }
  const notReady = setCondition(previous, { type: ConditionTypes.Ready, status: 'False', ...problem }, now);
  return setCondition(notReady, { type: ConditionTypes.Stalled, status: 'True', ...problem }, now);
}

async function findProblem(
  c: ControllerContext,
  policy: SalvagePolicy,
): Promise<{ reason: string; message: string } | undefined> {
  const spec = policy.spec;
  const outOfScope = secretRefsOf(policy)
    .map(([field, ref]) => [field, c.secrets.outOfScope(ref.namespace, ref.name)] as const)
    .find(([, why]) => why !== undefined);
  if (outOfScope) return { reason: ConditionReasons.SecretOutOfScope, message: `${outOfScope[0]}: ${outOfScope[1]}` };
  try {
    effectivePolicy(policy);
  } catch (err) {
    if (!(err instanceof PolicyFieldError)) throw err;
    return { reason: ConditionReasons.SpecInvalid, message: err.message };
  }
  try {
    const credentials = await registryCredentialsProblem(c, policy);
    if (credentials) return credentials;
    if (spec.backup?.caSecretRef) {
      const pem = (await c.secrets.value(spec.backup.caSecretRef, 'ca.crt')).toString('utf8');
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
        return {
          reason: ConditionReasons.SecretInvalid,
          message: 'spec.backup.caSecretRef: ca.crt holds no PEM certificate',
        };
      }
    }
    const webhook = spec.notifications?.webhook;
    if (webhook) {
      const url = (await c.secrets.value(webhook.urlSecretRef, 'url')).toString('utf8').trim();
      let parsed: URL | undefined;
      try {
        parsed = new URL(url);
      } catch {
        parsed = undefined;
      }
      if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
        // The URL may carry a token: say what is wrong without repeating it.
        return {
          reason: ConditionReasons.SecretInvalid,
          message: 'spec.notifications.webhook.urlSecretRef: the value is not an http(s) URL',
        };
      }
      if (webhook.signingSecretRef) await c.secrets.value(webhook.signingSecretRef, 'hmac-key');
    }
  } catch (err) {
    return missing(errorMessage(err));
  }
  return undefined;
}

const missing = (message: string) => ({ reason: ConditionReasons.SecretNotFound, message });

/** The first registry credentials Secret (backup, protection) that is missing or not a Docker config. */
async function registryCredentialsProblem(
  c: ControllerContext,
  policy: SalvagePolicy,
): Promise<{ reason: string; message: string } | undefined> {
  const refs: [string, SecretReference | undefined][] = [
    ['spec.backup.credentialsSecretRef', policy.spec.backup?.credentialsSecretRef],
    ['spec.protection.registryCredentialsSecretRef', policy.spec.protection?.registryCredentialsSecretRef],
  ];
  for (const [field, ref] of refs) {
    if (!ref) continue;
    const secret = await c.secrets.get(ref.namespace, ref.name);
    if (!secret) return missing(`${field}: Secret ${ref.namespace}/${ref.name} does not exist`);
    try {
      credentialsFromSecret(secret);
    } catch (err) {
      return { reason: ConditionReasons.SecretInvalid, message: `${field}: ${errorMessage(err)}` };
    }
  }
  return undefined;
}

/** Every Secret the policy names, with the field that names it. */
function secretRefsOf(policy: SalvagePolicy): [string, { namespace: string; name: string }][] {
  const { backup, notifications, protection } = policy.spec;
  const refs: [string, { namespace: string; name: string } | undefined][] = [
    ['spec.backup.credentialsSecretRef', backup?.credentialsSecretRef],
    ['spec.backup.caSecretRef', backup?.caSecretRef],
    ['spec.protection.registryCredentialsSecretRef', protection?.registryCredentialsSecretRef],
    ['spec.notifications.webhook.urlSecretRef', notifications?.webhook?.urlSecretRef],
    ['spec.notifications.webhook.signingSecretRef', notifications?.webhook?.signingSecretRef],
  ];
  return refs.filter((r): r is [string, { namespace: string; name: string }] => r[1] !== undefined);
}

function counters(c: ControllerContext, policy: string): SalvagePolicyCounters {
  const out: Required<SalvagePolicyCounters> = {
    recordsActive: 0,
    recordsCompleted: 0,
    recordsFailed: 0,
    recordsNotActionable: 0,
    recordsSkipped: 0,
    bytesTransferred: 0,
  };
  for (const record of c.caches.records.byIndex(Indexes.recordsByPolicy, policy)) {
    const phase = record.status?.phase;
    out.bytesTransferred += record.status?.progress?.transferredBytes ?? 0;
    if (phase === Phases.Completed) out.recordsCompleted++;
    else if (phase === Phases.Failed) out.recordsFailed++;
    else if (phase === Phases.NotActionable) out.recordsNotActionable++;
    else if (phase === Phases.Skipped) out.recordsSkipped++;
    else if (!isFinalPhase(phase)) out.recordsActive++;
  }
  return out;
}
