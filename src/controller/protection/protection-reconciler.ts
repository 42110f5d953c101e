// SalvagePolicy spec.protection → protective copies, before anything gets stuck. One reconcile per policy: list the
// digests the policy's pods run (caches), survey them (who holds a complete copy, does the registry still serve it:
// asked outside the reconcile in a lookup that re-enqueues the policy), plan purely (protection-plan.ts), and create one
// SalvageRecord (purpose Protect) per new copy. The records then move the image like any rescue: the record state
// machine locates a holder (a leaving node included), transfers, imports, pushes to the backup registry.
//
// Level-triggered and periodic: a policy is surveyed every --protection-survey-period and when a registry answer
// expires; at once when a node is cordoned, tainted for removal or deleted, or one of its protective records finishes;
// 2 s after pods start or workload templates change. A DetectOnly policy is surveyed (metrics, alert, status) but
// tote copies and pins nothing for it.
import type { KubernetesObject, V1Pod } from '@kubernetes/client-node';
import { errorMessage, isFinalPhase, recordName, SalvageRecordResource } from '../../api/index.ts';
import type { SalvagePolicy, SalvagePolicyProtectionSurvey } from '../../api/index.ts';
import { credentialsFromSecret } from '../../registry/index.ts';
import type { CredentialLookup } from '../../registry/index.ts';
import type { ReconcileContext, ReconcileResult } from '../../runtime/reconcile-loop.ts';
import type { ControllerContext, Workload } from '../context.ts';
import { digestFromPod } from '../pod/detection.ts';
import { digestFromNodeImages, nodePlatform, repositoryOf } from '../pod/node-images.ts';
import { effectivePolicy, PolicyFieldError } from '../policy/effective-policy.ts';
import type { ProtectionSettings } from '../policy/effective-policy.ts';
import { decideScope, scopeSubject } from '../policy/policy-match.ts';
import { newRecord } from '../record/new-record.ts';
import { leavingReason, nodeZone, underDiskPressure } from './leaving-nodes.ts';
import { planPins, planProtection } from './protection-plan.ts';
import type { DigestFacts, EndangeredImage, ExistingRecord, ImageInUse, NodeFacts } from './protection-plan.ts';

/** Surveys of one policy are at least this far apart, whatever expires. */
const minSurveyGapMs = 1_000;

export async function reconcileProtection(
  c: ControllerContext,
  name: string,
  ctx: ReconcileContext,
): Promise<ReconcileResult | void> {
  const policy = c.caches.policies.getByName(name);
  const protection = policy && !policy.metadata?.deletionTimestamp ? protectionOf(policy) : undefined;
  if (!policy || !protection) {
    c.metrics.observeProtection(name, undefined);
    c.protection.surveys.delete(name);
    return;
  }
  const period = { requeueAfterMs: c.protection.surveyPeriodMs };
  const images = imagesInUse(c, policy);
  if (images.length === 0) {
    summarise(c, name, { imagesInUse: 0, endangeredImages: 0, lostImages: 0 });
    return period;
  }
  const survey = c.protection.lookups.take({
    uid: policy.metadata?.uid ?? name,
    key: name,
    kind: 'survey',
    run: (signal) => surveyImages(c, images, protection, signal),
  });
  if (!survey) return;
  const plan = planProtection({
    images,
    facts: survey.value,
    nodes: nodeFacts(c),
    records: protectiveRecords(c),
    minCopies: protection.minCopies,
    evacuateOnDrain: protection.evacuateOnDrain,
  });
  summarise(c, name, {
    imagesInUse: images.length,
    endangeredImages: plan.endangered.length,
    lostImages: plan.lost.length,
  });
  const pins = planPins({
    images,
    facts: survey.value,
    nowSeconds: Math.floor(c.clock.now() / 1000),
    pinTtlSeconds: c.protection.pins.pinTtlMs / 1000,
  });
  if (protection.detectOnly) return nextSurvey(c, images, protection);
  c.protection.pins.apply(pins.filter((change) => !change.pin || protection.pin));
  for (const digest of plan.lost) {
    ctx.log.warn('an image in use is gone from its registry and no node holds a complete copy', { digest });
  }
  // One namespace refusing a record (being deleted, a quota) must not stop the copies of other images; the first
  // failure is rethrown afterwards so the policy is retried with backoff.
  const failures: unknown[] = [];
  for (const image of plan.endangered) failures.push(...(await protect(c, policy, image, ctx)));
  if (failures.length > 0) throw failures[0];
  return nextSurvey(c, images, protection);
}

/**
 * Again when the survey period ends, or sooner when a registry answer expires: a registry that stops serving is then
 * noticed one registryCheckInterval after it last said it served, not up to a survey period later.
 */
function nextSurvey(c: ControllerContext, images: readonly ImageInUse[], protection: Protection): ReconcileResult {
  const due = c.protection.registry.dueInMs(images, protection.registryCheckIntervalMs);
  return { requeueAfterMs: Math.max(minSurveyGapMs, Math.min(c.protection.surveyPeriodMs, due)) };
}

/** The survey's counts into the metrics, and into the policy's status when they changed (the policy reconciler writes it). */
function summarise(c: ControllerContext, name: string, survey: Required<SalvagePolicyProtectionSurvey>): void {
  c.metrics.observeProtection(name, { endangered: survey.endangeredImages, lost: survey.lostImages });
  const before = c.protection.surveys.get(name);
  c.protection.surveys.set(name, survey);
  if (JSON.stringify(before) !== JSON.stringify(survey)) c.enqueuePolicy(name);
}

/** spec.protection as tote applies it, and whether the policy only reports (DetectOnly). */
type Protection = ProtectionSettings & { detectOnly: boolean };

/** The policy's protection; undefined when absent or unreadable (the policy reconciler reports the field). */
function protectionOf(policy: SalvagePolicy): Protection | undefined {
  try {
    const effective = effectivePolicy(policy);
    return effective.protection ? { ...effective.protection, detectOnly: effective.mode === 'DetectOnly' } : undefined;
  } catch (err) {
    if (err instanceof PolicyFieldError) return undefined;
    throw err;
  }
}

/**
 * The digests this policy's workloads use: run by pods it governs (it wins their scope), or wanted by the pod template
 * of a Deployment, StatefulSet or DaemonSet it governs whose pods do not run them (scaled to zero, a rollout under
 * way), each with the reference the first of them names it by and that one's namespace. Pods that finished or are
 * being deleted do not count; a pod or template whose digest is not known yet (a tag no node lists) neither: a pod
 * stuck on it is the rescue's business.
 */
function imagesInUse(c: ControllerContext, policy: SalvagePolicy): ImageInUse[] {
  const byDigest = new Map<string, ImageInUse>();
  const nodes = c.caches.nodes.list();
  const pods = c.caches.pods.list().filter((p) => p.spec?.nodeName && !p.metadata?.deletionTimestamp && !finished(p));
  const templates = [c.caches.deployments, c.caches.statefulSets, c.caches.daemonSets].flatMap((cache) =>
    cache.list().map(asTemplatePod),
  );
  for (const pod of [...sorted(pods), ...sorted(templates)]) {
    const namespace = c.caches.namespaces.getByName(pod.metadata?.namespace ?? '');
    for (const container of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
      const image = container.image ?? '';
      const digest = digestFromPod(pod, container.name, image) ?? digestFromNodeImages(nodes, image);
      const repository = repositoryOf(image);
      if (!digest || !repository || byDigest.has(digest)) continue;
      const scope = decideScope(c.caches.policies.list(), scopeSubject(pod, namespace, repository));
      if (!scope.inScope || scope.policy?.metadata?.name !== policy.metadata?.name) continue;
      byDigest.set(digest, { digest, imageRef: image, namespace: pod.metadata?.namespace ?? '' });
    }
  }
  return [...byDigest.values()];
}

/** A workload's pod template as the pod it would make: its namespace, the template's labels, containers and no status. */
const asTemplatePod = (w: Workload): V1Pod => ({
  metadata: {
    namespace: w.metadata?.namespace ?? '',
    name: w.metadata?.name ?? '',
    ...(w.spec?.template?.metadata?.labels ? { labels: w.spec.template.metadata.labels } : {}),
    ...(w.spec?.template?.metadata?.annotations ? { annotations: w.spec.template.metadata.annotations } : {}),
  },
  spec: {
    containers: w.spec?.template?.spec?.containers ?? [],
    initContainers: w.spec?.template?.spec?.initContainers,
  },
});

const sorted = (pods: V1Pod[]) => [...pods].sort((a, b) => podKey(a).localeCompare(podKey(b)));
const finished = (pod: V1Pod) => pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';
const podKey = (pod: V1Pod) => `${pod.metadata?.namespace}/${pod.metadata?.name}`;

/** Who holds each digest completely (every live agent asked, batched per node) and what its registry says. */
async function surveyImages(
  c: ControllerContext,
  images: readonly ImageInUse[],
  protection: ProtectionSettings,
  signal: AbortSignal,
): Promise<Map<string, DigestFacts>> {
  const nodes = [...c.agents.alive().keys()];
  const credentials = await registryCredentials(c, protection);
  const facts = new Map<string, DigestFacts>();
  await Promise.all(
    images.map(async (image) => {
      const [round, registry] = await Promise.all([
        c.agents.imageEverywhere(nodes, image.digest),
        c.protection.registry.check(image.imageRef, image.digest, {
          intervalMs: protection.registryCheckIntervalMs,
          ...(credentials ? { credentials } : {}),
          signal,
        }),
      ]);
      const complete = [...round.answers].filter(([, held]) => held?.complete);
      facts.set(image.digest, {
        holders: complete.map(([node]) => node),
        registry,
        pinnedUntil: new Map(complete.map(([node, held]) => [node, held?.pinnedUntil ?? 0])),
      });
    }),
  );
  return facts;
}

async function registryCredentials(
  c: ControllerContext,
  protection: ProtectionSettings,
): Promise<CredentialLookup | undefined> {
  const ref = protection.registryCredentialsSecretRef;
  if (!ref) return undefined;
  const secret = await c.secrets.get(ref.namespace, ref.name);
  // The policy reconciler says Ready=False for a missing Secret; meanwhile the registry is asked anonymously.
  return secret ? credentialsFromSecret(secret) : undefined;
}

function nodeFacts(c: ControllerContext): NodeFacts[] {
  const alive = c.agents.alive();
  return c.caches.nodes.list().map((node) => ({
    name: node.metadata?.name ?? '',
    platform: nodePlatform(node),
    zone: nodeZone(node),
    leaving: leavingReason(node),
    agentAlive: alive.has(node.metadata?.name ?? ''),
    diskPressure: underDiskPressure(node),
  }));
}

/** Every record with a digest (rescues included: a rescue on its way is a copy on its way). */
function protectiveRecords(c: ControllerContext): ExistingRecord[] {
  return c.caches.records.list().flatMap((r) => {
    const digest = r.spec.digest ?? r.status?.digest;
    return digest ? [{ digest, targetNode: r.spec.targetNode, active: !isFinalPhase(r.status?.phase) }] : [];
  });
}

/**
 * With a backup registry the image is pushed as soon as it is found endangered, not only once a new copy lands, and
 * even when no node qualifies for a copy: a record on a node that holds it (a staying one first) finds the copy
 * complete there, moves nothing, and pushes. None when a record of this digest already sits on a holder.
 */
function backupPushTarget(c: ControllerContext, policy: SalvagePolicy, image: EndangeredImage): string | undefined {
  if (!policy.spec.backup) return undefined;
  const onAHolder = c.caches.records
    .list()
    .some((r) => (r.spec.digest ?? r.status?.digest) === image.digest && image.holders.includes(r.spec.targetNode));
  return onAHolder ? undefined : (image.safeHolders[0] ?? image.leavingHolders[0]);
}

/**
 * One record per new copy of an endangered image, and one that pushes it to the policy's backup registry from where it
 * is; returns the errors of the creations that failed.
 */
async function protect(
  c: ControllerContext,
  policy: SalvagePolicy,
  image: EndangeredImage,
  ctx: ReconcileContext,
): Promise<unknown[]> {
  const failures: unknown[] = [];
  if (image.shortBy > 0) {
    ctx.log.warn('not enough nodes qualify for the copies this image needs', {
      digest: image.digest,
      holders: image.holders,
      shortBy: image.shortBy,
    });
  }
  const pushFrom = backupPushTarget(c, policy, image);
  for (const target of pushFrom ? [pushFrom, ...image.newTargets] : image.newTargets) {
    const name = recordName({ digest: image.digest, imageRef: image.imageRef, node: target });
    const record = newRecord(name, image.namespace, policy, {
      imageRef: image.imageRef,
      digest: image.digest,
      targetNode: target,
      purpose: 'Protect',
      reason: image.reason,
    });
    try {
      const { created } = await c.kube.createOrGet(SalvageRecordResource, record as KubernetesObject);
      if (!created) continue;
      if (target !== pushFrom) c.metrics.protectiveCopies.inc({ reason: image.reason });
      ctx.log.info(
        target === pushFrom ? 'endangered image: backup push ordered' : 'endangered image: protective copy ordered',
        {
          record: `${image.namespace}/${name}`,
          digest: image.digest,
          holders: image.holders,
          leaving: image.leavingHolders,
          target,
          reason: image.reason,
        },
      );
    } catch (err) {
      ctx.log.warn('could not create a protective record', { record: name, error: errorMessage(err) });
      failures.push(err);
    }
  }
  return failures;
}
