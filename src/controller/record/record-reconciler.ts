// SalvageRecords → images on nodes. One reconcile: observe what the current phase needs (caches first, agents and the
// registry only when the phase asks), decide purely (record-machine.ts), write the status once, conditional on the
// resourceVersion the decision was based on, and only then act. A conflict means someone wrote in between: the
// reconcile ends and runs again on fresh data, so no action is ever taken on a stale decision.
//
// Asking agents or a registry never happens inside a reconcile: it starts a lookup (lookups.ts) and ends without
// deciding; the lookup re-enqueues the record when it has an answer, and the next reconcile decides on it. So a worker
// never waits on the network except to write status or act.
import type { V1Pod } from '@kubernetes/client-node';
import {
  ConditionTypes,
  errorMessage,
  findCondition,
  isFinalPhase,
  isToteError,
  Phases,
  SalvageRecordResource,
} from '../../api/index.ts';
import type { Phase, SalvageRecord, SalvageRecordStatus } from '../../api/index.ts';
import type { ImportResponse } from '../../agentapi/index.ts';
import { ImportPhase, transferTokenLifetimeMs } from '../../agentapi/index.ts';
import { credentialsFromSecret, parseReference, recordNameFor, RegistryClient } from '../../registry/index.ts';
import { isLoopbackRegistry } from '../registry-access.ts';
import { resources } from '../../runtime/kube.ts';
import type { ReconcileContext, ReconcileResult } from '../../runtime/reconcile-loop.ts';
import { Indexes } from '../context.ts';
import type { ControllerContext } from '../context.ts';
import { controllerOwner } from '../pod/detection.ts';
import { defaultPolicy } from '../policy/effective-policy.ts';
import { recordPolicy } from './record-policy.ts';
import type { EffectivePolicy } from '../policy/effective-policy.ts';
import { incidentsOf } from '../pod/incidents.ts';
import type { Incident } from '../pod/incidents.ts';
import { digestFromNodeImages, nodePlatform, nodesListingDigest, normalise, repositoryOf } from '../pod/node-images.ts';
import { decide, retryPendingMs, wantedReferences } from './record-machine.ts';
import type {
  DigestObservation,
  PushObservation,
  RecordAction,
  RecordObservation,
  SourceCandidate,
  TargetImageState,
  TransferObservation,
  WaitingPod,
} from './record-machine.ts';

export async function reconcileRecord(
  c: ControllerContext,
  key: string,
  ctx: ReconcileContext,
): Promise<ReconcileResult | void> {
  const record = c.caches.records.get(key);
  if (!record || record.metadata?.deletionTimestamp) {
    return;
  }
  const backingOff = retryPendingMs(record, new Date(c.clock.now()));
  if (backingOff !== undefined) return { requeueAfterMs: backingOff };
  const resolved = recordPolicy(c, record);
  if (resolved.kind === 'unusable') {
    // Only this policy's records wait; the policy says Ready=False with the field, so nothing here repeats it loudly.
    ctx.log.debug('waiting for the record’s policy to be fixed', { policy: resolved.policy, why: resolved.message });
    return { requeueAfterMs: unusablePolicyRecheckMs };
  }
  const policy = resolved.kind === 'policy' ? resolved.policy : defaultPolicy;
  const obs = observe(c, record, policy, ctx, resolved.kind === 'refused' ? resolved : undefined);
  // A lookup runs; it re-enqueues the record when it finishes. Deciding now would act on half an observation.
  if (!obs) return;
  const decision = decide(record, obs, c.machine);
  const uid = record.metadata?.uid ?? '';
  const starting = decision.actions.find((a) => a.type === 'startTransfer');
  if (starting) c.imports.claim(uid, transferTags(policy, starting));
  try {
    if (decision.status) {
      await writeStatus(c, record, decision.status);
      countTransition(c, record, decision.status, decision.entered);
    }
    for (const action of decision.actions) await act(c, record, policy, action, ctx);
  } finally {
    // Started (the claim became the operation) or not started at all: either way no longer only decided.
    c.imports.release(uid);
  }
  if (decision.status?.phase && decision.status.phase !== record.status?.phase) {
    ctx.log.info('record moved', {
      from: record.status?.phase ?? Phases.Pending,
      to: decision.status.phase,
      message: decision.status.message,
    });
    if (record.spec.policyRef?.name) c.enqueuePolicy(record.spec.policyRef.name);
  }
  return decision.requeueAfterMs !== undefined ? { requeueAfterMs: Math.max(1, decision.requeueAfterMs) } : undefined;
}

/** A record whose policy has a field tote cannot read looks again this often. */
const unusablePolicyRecheckMs = 60_000;

// ---------------------------------------------------------------------------------------------------------------
// Observation

/** What the machine needs to decide, or undefined while a lookup it needs is still running. */
function observe(
  c: ControllerContext,
  record: SalvageRecord,
  policy: EffectivePolicy,
  ctx: ReconcileContext,
  refused?: { reason: string; message: string },
): RecordObservation | undefined {
  const phase = record.status?.phase ?? Phases.Pending;
  const node = c.caches.nodes.getByName(record.spec.targetNode);
  const alive = c.agents.alive();
  const obs: RecordObservation = {
    now: new Date(c.clock.now()),
    policy,
    target: {
      exists: node !== undefined,
      agentAlive: alive.has(record.spec.targetNode),
      ...(node ? { platform: nodePlatform(node) } : {}),
      image: 'unknown',
    },
    pods: waitingPods(c, record),
  };
  // Refused: no lookup with a policy the record may not use.
  if (refused) return { ...obs, policyRefused: refused };
  const digest = record.spec.digest ?? record.status?.digest;
  switch (phase) {
    case Phases.Pending:
    case Phases.Resolving:
      // A Pending record decides through Resolving and Locating at once (see decide()): it looks as far as they do, so
      // its first status write is already the transfer's start (or why there is none).
      if (!observeResolving(c, record, policy, obs, ctx)) return undefined;
      break;
    case Phases.Locating: {
      // Sources matter only once the target exists and its agent can receive (see locating() in record-machine.ts).
      if (!digest || !obs.target.exists || !obs.target.agentAlive) break;
      if (!observeLocating(c, record, policy, digest, obs, ctx)) return undefined;
      break;
    }
    case Phases.Transferring:
    case Phases.Importing: {
      const transfer = transferObservation(c, record);
      if (transfer) obs.transfer = transfer;
      break;
    }
    case Phases.Restarting:
    case Phases.Pushing: {
      // Restarting may go on to Pushing in the same decision.
      const push = pushObservation(c, record);
      if (push) obs.push = push;
      break;
    }
    default:
      // Finished records look at the target only when a pod waits again (reopen); otherwise they cost nothing. Pending
      // and Restarting decide without it.
      if (isFinalPhase(phase) && obs.pods.length > 0 && digest && obs.target.agentAlive) {
        const image = lookup(c, record, `target ${digest}`, ctx, () =>
          targetImageState(c, record.spec.targetNode, digest, wantedReferences(record, obs.pods), ctx),
        );
        if (!image) return undefined;
        obs.target.image = image;
      }
  }
  return obs;
}

/**
 * Resolving's observation: the digest, and where the image is once the digest is known, so the decision can go on
 * through Locating. Digests the caches know (or the spec names) need only the location lookup; otherwise one lookup
 * asks for both, one after the other. False while a lookup runs.
 */
function observeResolving(
  c: ControllerContext,
  record: SalvageRecord,
  policy: EffectivePolicy,
  obs: RecordObservation,
  ctx: ReconcileContext,
): boolean {
  // No node to bring the image to: no lookup (see resolving() in record-machine.ts).
  if (!obs.target.exists) return true;
  const cached = record.spec.digest ? undefined : digestFromCaches(c, record);
  if (cached) obs.digest = cached;
  const known = record.spec.digest ?? (cached?.kind === 'resolved' ? cached.digest : undefined);
  if (known !== undefined) return !obs.target.agentAlive || observeLocating(c, record, policy, known, obs, ctx);
  const found = lookup(c, record, 'resolve', ctx, async (signal) => {
    const digest = await resolveRemotely(c, record, policy, ctx, signal);
    const location =
      digest.kind === 'resolved' && obs.target.agentAlive
        ? await locate(c, record, digest.digest, obs.target.platform, wantedReferences(record, obs.pods), ctx)
        : undefined;
    return { digest, location };
  });
  if (!found) return false;
  obs.digest = found.digest;
  if (found.digest.kind === 'resolved' && found.location)
    observeLocation(c, policy, locatedImage(record, found.digest.digest), found.location, obs);
  return true;
}

/** Locating's observation: where complete copies are, and the target's own. False while the lookup runs. */
function observeLocating(
  c: ControllerContext,
  record: SalvageRecord,
  policy: EffectivePolicy,
  digest: string,
  obs: RecordObservation,
  ctx: ReconcileContext,
): boolean {
  const location = lookup(c, record, `locate ${digest}`, ctx, () =>
    locate(c, record, digest, obs.target.platform, wantedReferences(record, obs.pods), ctx),
  );
  if (!location) return false;
  observeLocation(c, policy, locatedImage(record, digest), location, obs);
  return true;
}

const locatedImage = (record: SalvageRecord, digest: string) => ({
  digest,
  target: record.spec.targetNode,
  evacuation: record.spec.reason === 'Evacuation',
});

function pushObservation(c: ControllerContext, record: SalvageRecord): PushObservation | undefined {
  const push = c.pushes.get(record.metadata?.uid ?? '');
  if (!push) return undefined;
  if (push.state === 'running') return { state: 'pushing' };
  return push.state === 'succeeded'
    ? {
        state: 'succeeded',
        reference: push.progress?.pushedReference ?? '',
        ...(push.progress?.pushedTag ? { tag: push.progress.pushedTag } : {}),
        ...(push.progress?.tagHeldBy ? { tagHeldBy: push.progress.tagHeldBy } : {}),
      }
    : { state: 'failed', message: push.error?.message ?? 'push failed' };
}

/**
 * The result of lookup `kind` for this record, taken (the next attempt asks anew); or undefined after making sure it
 * runs, in which case the record is re-enqueued when it finishes.
 */
function lookup<T>(
  c: ControllerContext,
  record: SalvageRecord,
  kind: string,
  ctx: ReconcileContext,
  run: (signal: AbortSignal) => Promise<T>,
): T | undefined {
  const uid = record.metadata?.uid ?? '';
  const key = `${record.metadata?.namespace}/${record.metadata?.name}`;
  const taken = c.lookups.take({ uid, key, kind, run });
  if (!taken) ctx.log.debug('waiting for a lookup', { kind });
  return taken?.value;
}

/** Pods on the target node, in the record's namespace, stuck on this record's image. */
function waitingPods(c: ControllerContext, record: SalvageRecord): WaitingPod[] {
  const namespace = record.metadata?.namespace;
  const nodes = c.caches.nodes.list();
  const pods: WaitingPod[] = [];
  for (const pod of c.caches.pods.byIndex(Indexes.podsByNode, record.spec.targetNode)) {
    if (pod.metadata?.namespace !== namespace) continue;
    const waiting = incidentsOf(pod, nodes).filter(
      (i) => i.recordName === record.metadata?.name || i.image === record.spec.imageRef,
    );
    if (waiting.length > 0) pods.push(toWaitingPod(pod, waiting));
  }
  return pods.sort((a, b) => a.name.localeCompare(b.name));
}

const toWaitingPod = (pod: V1Pod, incidents: Incident[]): WaitingPod => ({
  name: pod.metadata?.name ?? '',
  uid: pod.metadata?.uid ?? '',
  ...(pod.metadata?.resourceVersion ? { resourceVersion: pod.metadata.resourceVersion } : {}),
  owned: controllerOwner(pod) !== undefined,
  references: [...new Set(incidents.map((i) => i.image))],
  pullsAlways: incidents.some((i) => i.imagePullPolicy === 'Always'),
  ...missingContentOf(incidents),
});

const missingContentOf = (incidents: Incident[]): { missingContent?: string } => {
  const missing = incidents.find((i) => i.missingDigest !== undefined)?.missingDigest;
  return missing !== undefined ? { missingContent: missing } : {};
};

// The resolution chain: the pod's own status, the nodes' image lists (both cached: answered in the reconcile), the
// agents, then (if allowed) the registry (both in a lookup).

function digestFromCaches(c: ControllerContext, record: SalvageRecord): DigestObservation | undefined {
  const image = record.spec.imageRef;
  const pod = record.spec.podRef
    ? c.caches.pods.getByName(record.spec.podRef.name, record.metadata?.namespace)
    : undefined;
  if (pod) {
    const fromPod = incidentsOf(pod, []).find((i) => i.image === image)?.digest;
    if (fromPod) return { kind: 'resolved', digest: fromPod, source: 'pod' };
  }
  const fromNodes = digestFromNodeImages(c.caches.nodes.list(), image);
  if (fromNodes) return { kind: 'resolved', digest: fromNodes, source: 'node' };
  return undefined;
}

async function resolveRemotely(
  c: ControllerContext,
  record: SalvageRecord,
  policy: EffectivePolicy,
  ctx: ReconcileContext,
  signal: AbortSignal,
): Promise<DigestObservation> {
  const image = record.spec.imageRef;
  const fromAgents = await digestFromAgents(c, image, ctx);
  if (fromAgents) return { kind: 'resolved', digest: fromAgents, source: 'agent' };
  if (!policy.tagResolution.enabled) {
    return {
      kind: 'unresolvable',
      message: `no node knows the digest of ${image} and the policy does not allow asking its registry (spec.tagResolution.enabled)`,
    };
  }
  try {
    const client = new RegistryClient({
      timeoutMs: policy.tagResolution.timeoutMs,
      ...(isLoopbackRegistry(image) ? { plainHttp: true } : {}),
    });
    try {
      const resolved = await client.resolve(image, { timeoutMs: policy.tagResolution.timeoutMs, signal });
      c.metrics.registryResolves.inc({ result: 'resolved' });
      return { kind: 'resolved', digest: resolved.digest, source: 'registry' };
    } finally {
      client.close();
    }
  } catch (err) {
    if (isToteError(err, 'not-found')) {
      c.metrics.registryResolves.inc({ result: 'not-found' });
      return { kind: 'unresolvable', message: `the registry no longer serves ${image} and no node knows its digest` };
    }
    c.metrics.registryResolves.inc({ result: 'error' });
    if (isToteError(err, 'terminal') || isToteError(err, 'unauthorized')) {
      return { kind: 'unresolvable', message: `asking the registry for ${image} failed: ${errorMessage(err)}` };
    }
    return { kind: 'error', message: errorMessage(err) };
  }
}

/** Asks every live agent which digest its local record of the tag points at; agreement is required. */
async function digestFromAgents(
  c: ControllerContext,
  image: string,
  ctx: ReconcileContext,
): Promise<string | undefined> {
  const wanted = normalise(image);
  if (!wanted) return undefined;
  const cached = await digestsFromAgents(c, wanted, false, ctx);
  if (cached.size > 0) return cached.size === 1 ? [...cached][0] : undefined;
  // "Nobody knows the tag" ends the record as NotActionable: never conclude it from inventories cached before a pull.
  const fresh = await digestsFromAgents(c, wanted, true, ctx);
  return fresh.size === 1 ? [...fresh][0] : undefined;
}

async function digestsFromAgents(
  c: ControllerContext,
  wanted: string,
  fresh: boolean,
  ctx: ReconcileContext,
): Promise<Set<string>> {
  // Every record of a burst waiting on the same tag shares one round of questions (see findCandidates).
  return c.agents.fanOut(`resolve|${wanted}|${fresh}`, async () => {
    const round = await c.agents.resolveEverywhere([...c.agents.alive().keys()], wanted, { fresh });
    for (const [node, err] of round.failed)
      ctx.log.debug('agent did not answer while resolving', { node, error: errorMessage(err) });
    return new Set([...round.answers.values()].filter((digest) => digest !== undefined));
  });
}

/** What the agents say for Locating: the target's copy and the complete copies elsewhere, best first. */
interface Location {
  targetImage: TargetImageState;
  candidates: (SourceCandidate & { size: number })[];
  unreachable: string[];
}

async function locate(
  c: ControllerContext,
  record: SalvageRecord,
  digest: string,
  platform: string | undefined,
  references: readonly string[],
  ctx: ReconcileContext,
): Promise<Location> {
  const [targetImage, found] = await Promise.all([
    targetImageState(c, record.spec.targetNode, digest, references, ctx),
    (async () => {
      const cached = await findCandidates(c, record, digest, platform, false, ctx);
      // No copy ends the record as NotActionable: never conclude it from inventories cached before a pull.
      return cached.candidates.length > 0 ? cached : findCandidates(c, record, digest, platform, true, ctx);
    })(),
  ]);
  return {
    targetImage,
    candidates: found.candidates.sort((a, b) => a.node.localeCompare(b.node)),
    unreachable: found.unreachable.sort(),
  };
}

/**
 * Enqueues the records of `digest` in Locating other than `except`: a transfer of it ended, so its source is free again
 * (and its target may serve now).
 */
function wakeRecordsLocating(c: ControllerContext, digest: string, except: string): void {
  for (const other of c.caches.records.list()) {
    const otherKey = `${other.metadata?.namespace}/${other.metadata?.name}`;
    if (otherKey !== except && other.status?.phase === Phases.Locating && other.status.digest === digest)
      c.enqueueRecord(otherKey);
  }
}

/** The tag that counts the transfers of one image one node serves (transfersPerSource). */
const sourceImageKey = (node: string, digest: string): string => `${node}|${digest}`;

/** What a transfer is counted by: its policy's slots, its source, and its source's transfers of this image. */
const transferTags = (policy: EffectivePolicy, action: { source: string; digest: string }): Record<string, string> => ({
  policy: policy.name ?? '',
  source: action.source,
  sourceImage: sourceImageKey(action.source, action.digest),
});

/** Fills target state, candidates, size and slot availability for Locating; slots are counted now, not looked up. */
function observeLocation(
  c: ControllerContext,
  policy: EffectivePolicy,
  image: { digest: string; target: string; evacuation: boolean },
  location: Location,
  obs: RecordObservation,
): void {
  const { digest, target } = image;
  const { candidates } = location;
  obs.target.image = location.targetImage;
  const received = c.agents.receivedBy(digest);
  // Nodes tote finished copying the image onto after the lookup's answers were gathered hold it too (the import was
  // verified); with them a record that waited for a free source sees the holders of now, not of a moment ago.
  const holders = [
    ...candidates.map(({ node }) => node),
    ...[...received].filter(
      (node) =>
        node !== target &&
        !candidates.some((x) => x.node === node) &&
        c.agents.alive().has(node) &&
        samePlatformAs(c, node, obs.target.platform),
    ),
  ];
  obs.candidates = holders.map((node) => ({
    node,
    serving: c.imports.countRunning('sourceImage', sourceImageKey(node, digest)),
    received: received.has(node),
  }));
  obs.unreachableNodes = location.unreachable;
  if (candidates[0]) obs.imageBytes = candidates[0].size;
  const policyKey = policy.name ?? '';
  // An evacuation races a drain: it never waits for a slot, so it goes ahead of every other transfer.
  obs.transferSlotFree =
    image.evacuation || c.imports.countRunning('policy', policyKey) < policy.maxConcurrentTransfers;
  c.metrics.lastCopyImages.set(countLastCopies(c));
}

/**
 * Nodes holding a complete copy. The kubelet's image lists (Node.status.images, at most 50 images a node) and the
 * agents' answers when the tag was resolved hint where to look first; only when no hinted node has a complete copy
 * are all agents asked, so on a cluster whose kubelets list images a burst of records costs a few calls per image,
 * not one per node. Without hints the directory batches
 * and bounds the questions: about one call per node for all images of a burst, a few at a time.
 */
async function findCandidates(
  c: ControllerContext,
  record: SalvageRecord,
  digest: string,
  platform: string | undefined,
  fresh: boolean,
  ctx: ReconcileContext,
): Promise<{ candidates: (SourceCandidate & { size: number })[]; unreachable: string[] }> {
  const target = record.spec.targetNode;
  // The question "who holds this digest" is the same for every record of the image on this platform: concurrent
  // records share one round (the target is filtered out per record), so a burst costs one round per image, not one
  // per record: keep it so, or a burst's pending questions grow as records times nodes (bench-scale shows it).
  const alive = [...c.agents.alive().keys()].filter((node) => samePlatformAs(c, node, platform));
  const repository = repositoryOf(record.spec.imageRef);
  const hinted = new Set([
    ...(repository ? nodesListingDigest(c.caches.nodes.list(), repository, digest) : []),
    // Nodes whose record of the tag pointed at this digest when it was resolved: on a cluster whose kubelets do not
    // list the image, resolving the tag already found where it is.
    ...c.agents.holderHints(digest),
  ]);
  const round = `holders|${digest}|${platform ?? ''}|${fresh}`;
  const notTarget = (r: Holders): Holders => ({
    candidates: r.candidates.filter((x) => x.node !== target),
    unreachable: r.unreachable.filter((n) => n !== target),
  });
  const hintedNodes = alive.filter((n) => hinted.has(n));
  const first = notTarget(
    await c.agents.fanOut(`${round}|hinted|${hintedNodes.join(',')}`, () =>
      askNodes(c, hintedNodes, digest, fresh, ctx),
    ),
  );
  if (first.candidates.length > 0) return first;
  const otherNodes = alive.filter((n) => !hinted.has(n));
  const rest = notTarget(
    await c.agents.fanOut(`${round}|others|${otherNodes.length}`, () => askNodes(c, otherNodes, digest, fresh, ctx)),
  );
  return { candidates: rest.candidates, unreachable: [...first.unreachable, ...rest.unreachable] };
}

type Holders = { candidates: (SourceCandidate & { size: number })[]; unreachable: string[] };

async function askNodes(
  c: ControllerContext,
  nodes: string[],
  digest: string,
  fresh: boolean,
  ctx: ReconcileContext,
): Promise<{ candidates: (SourceCandidate & { size: number })[]; unreachable: string[] }> {
  // Completeness is judged per image from the blobs really present.
  const round = await c.agents.imageEverywhere(nodes, digest, { fresh });
  const candidates: (SourceCandidate & { size: number })[] = [];
  for (const [node, image] of round.answers) if (image?.complete) candidates.push({ node, size: image.size });
  for (const [node, err] of round.failed)
    ctx.log.debug('agent did not answer while locating', { node, error: errorMessage(err) });
  return { candidates, unreachable: [...round.failed.keys()] };
}

/** A node of another platform cannot supply this one's manifest. Unknown platforms are asked anyway. */
function samePlatformAs(c: ControllerContext, node: string, platform: string | undefined): boolean {
  const obj = c.caches.nodes.getByName(node);
  return !platform || !obj || samePlatform(nodePlatform(obj), platform);
}

const samePlatform = (a: string, b: string) =>
  a.split('/').slice(0, 2).join('/') === b.split('/').slice(0, 2).join('/');

/**
 * What the target holds of the image. Complete content is not enough: the kubelet finds an image only under the record
 * names a CRI pull of the pod's reference makes, so a copy lacking one of them is `unnamed` (an import adds the names).
 */
async function targetImageState(
  c: ControllerContext,
  node: string,
  digest: string,
  references: readonly string[],
  ctx: ReconcileContext,
): Promise<TargetImageState> {
  try {
    const image = await c.agents.image(node, digest, { fresh: true });
    if (!image) return 'absent';
    if (!image.complete) return 'incomplete';
    const names = new Set(image.names);
    return references.every((r) => names.has(criRecordName(r) ?? r)) ? 'complete' : 'unnamed';
  } catch (err) {
    ctx.log.debug('target agent did not answer', { node, error: errorMessage(err) });
    return 'unknown';
  }
}

/** The record name CRI keeps for a reference, or undefined for one it could not parse (never found, then). */
function criRecordName(reference: string): string | undefined {
  try {
    return recordNameFor(reference);
  } catch {
    return undefined;
  }
}

function transferObservation(c: ControllerContext, record: SalvageRecord): TransferObservation | undefined {
  const op = c.imports.get(record.metadata?.uid ?? '');
  if (!op) return undefined;
  const p: ImportResponse | undefined = op.progress;
  const base = {
    source: op.tags.source ?? '',
    totalBytes: p?.bytesTotal ?? 0,
    presentBytes: (p?.bytesSkipped ?? 0) + (p?.bytesResumed ?? 0),
    transferredBytes: p?.bytesTransferred ?? 0,
    totalBlobs: p?.blobsTotal ?? 0,
    transferredBlobs: p?.blobsTransferred ?? 0,
    elapsedMs: c.clock.now() - op.startedAt,
  };
  if (op.state === 'failed') return { ...base, state: 'failed', ...(op.error ? { error: op.error } : {}) };
  if (op.state === 'succeeded') return { ...base, state: 'succeeded' };
  return { ...base, state: p?.phase === ImportPhase.IMPORT_PHASE_RECORDING ? 'importing' : 'transferring' };
}

/** Active records whose image had exactly one holder when last located. */
function countLastCopies(c: ControllerContext): number {
  const digests = new Set<string>();
  for (const r of c.caches.records.list()) {
    const phase = r.status?.phase;
    if (phase === Phases.Locating || phase === Phases.Transferring || phase === Phases.Importing) {
      if ((r.status?.candidates ?? []).length === 1 && r.status?.digest) digests.add(r.status.digest);
    }
  }
  return digests.size;
}

// ---------------------------------------------------------------------------------------------------------------
// Writing and acting

async function writeStatus(c: ControllerContext, record: SalvageRecord, status: SalvageRecordStatus): Promise<void> {
  // PUT with the resourceVersion we decided on: a 409 surfaces as a conflict and the loop re-reads and retries.
  await c.kube.updateStatus(SalvageRecordResource, { ...record, status });
}

function countTransition(
  c: ControllerContext,
  record: SalvageRecord,
  status: SalvageRecordStatus,
  entered: readonly Phase[],
): void {
  const from = record.status?.phase;
  const to = status.phase;
  // An incident is salvageable once: when a complete copy is first found. A record waiting for a transfer slot, or
  // retrying, locates again without counting again.
  const sourceFound = (s: SalvageRecordStatus | undefined) =>
    findCondition(s?.conditions, ConditionTypes.SourceFound)?.status === 'True';
  if (sourceFound(status) && !sourceFound(record.status)) c.metrics.salvageable.inc();
  if (from === to) return;
  if (to === Phases.NotActionable) c.metrics.notActionable.inc();
  if (to === Phases.Failed) c.metrics.salvageFailures.inc();
  if (to === Phases.Skipped) c.metrics.skipped.inc({ reason: status.history?.at(-1)?.reason ?? 'Unknown' });
  // One decision may pass through several phases (Importing → Restarting → Completed): count what it passed.
  const pushed = (from === Phases.Pushing || entered.includes(Phases.Pushing)) && to !== Phases.Pushing;
  if (pushed && status.backup?.result === 'Pushed') c.metrics.pushSuccesses.inc();
  if (pushed && status.backup?.result === 'Failed') c.metrics.pushFailures.inc();
  if (entered.includes(Phases.Restarting) && (from === Phases.Transferring || from === Phases.Importing)) {
    c.metrics.salvageSuccesses.inc();
    c.metrics.bytesTransferred.inc(status.progress?.transferredBytes ?? 0);
    const started = Date.parse(status.startedAt ?? '');
    if (!Number.isNaN(started)) c.metrics.salvageDuration.observe((c.clock.now() - started) / 1000);
  }
}

async function act(
  c: ControllerContext,
  record: SalvageRecord,
  policy: EffectivePolicy,
  action: RecordAction,
  ctx: ReconcileContext,
): Promise<void> {
  const uid = record.metadata?.uid ?? '';
  const key = `${record.metadata?.namespace}/${record.metadata?.name}`;
  const target = record.spec.targetNode;
  switch (action.type) {
    case 'startTransfer': {
      const client = c.agents.client(target);
      const source = c.agents.alive().get(action.source);
      if (!client || !source) {
        // The agent vanished between deciding and acting; the next reconcile sees it and decides again.
        ctx.log.info('agent gone before the transfer could start', { target, source: action.source });
        return;
      }
      const token = c.signToken({ digest: action.digest, source: action.source, target });
      const names = action.references;
      const started = c.imports.start({
        uid,
        key,
        tags: transferTags(policy, action),
        run: (onProgress, signal) =>
          client
            .import(
              {
                digest: action.digest,
                sourceAddress: source.address,
                sourceNode: action.source,
                token,
                names,
                maxBytes: policy.maxImageSizeBytes,
                ...(policy.bandwidthBytesPerSecond ? { bandwidthBytesPerSecond: policy.bandwidthBytesPerSecond } : {}),
                transferId: uid,
              },
              { onProgress, signal, timeoutMs: transferTokenLifetimeMs },
            )
            .then(
              (result) => {
                // The target holds the image from this moment, before the tracker stops counting the transfer against
                // its source: a record locating in between sees the new holder, not only a free first source.
                c.agents.noteHolder(action.digest, target);
                c.agents.invalidate(target);
                wakeRecordsLocating(c, action.digest, key);
                return result;
              },
              (err: unknown) => {
                // The source may have lost its copy or its agent: what is cached about it is asked again before the
                // retry picks a source (a cached "complete" would send every retry to a dead node), and it no longer
                // counts as a node that received the image, so the holders that seeded the tree serve again.
                c.agents.invalidate(action.source);
                c.agents.forgetReceived(action.digest, action.source);
                wakeRecordsLocating(c, action.digest, key);
                throw err;
              },
            ),
      });
      if (started) {
        c.metrics.salvageAttempts.inc();
        ctx.log.info('transfer started', { source: action.source, target, digest: action.digest });
      }
      return;
    }
    case 'forgetTransfer':
      c.imports.forget(uid);
      c.agents.invalidate(target);
      return;
    case 'removeCorruptImage': {
      const client = c.agents.client(target);
      if (!client) return;
      const removed = await client.removeImage({ digest: action.digest, verifyBlobs: true });
      c.agents.invalidate(target);
      c.metrics.corruptImages.inc();
      ctx.log.info('corrupt image removed', {
        node: target,
        names: removed.removedNames,
        blobs: removed.deletedBlobs.length,
      });
      return;
    }
    case 'deletePod': {
      const namespace = record.metadata?.namespace;
      // The UID precondition deletes exactly the stuck pod, never a replacement that took its name; the resourceVersion
      // spares a pod that changed since it was seen waiting (it may have started): the next reconcile looks again.
      const preconditions = {
        uid: action.uid,
        ...(action.resourceVersion ? { resourceVersion: action.resourceVersion } : {}),
      };
      try {
        const deleted = await c.kube.delete(resources.pods, action.name, namespace, preconditions);
        ctx.log.info(deleted ? 'pod deleted so its controller recreates it' : 'pod already gone', { pod: action.name });
      } catch (err) {
        if (!isToteError(err, 'conflict')) throw err;
        ctx.log.info('pod changed since it was seen waiting; not deleted', { pod: action.name });
      }
      return;
    }
    case 'startPush':
      await startPush(c, record, policy, action.digest, key, ctx);
      return;
    case 'reportStuck':
      c.metrics.podsStillWaiting.inc({ reason: action.reason });
      ctx.log.warn('pods still wait although the image is on their node', {
        node: target,
        pods: action.pods,
        reason: action.reason,
        message: action.message,
      });
      return;
    case 'event':
      // Sent in the background (the recorder queues it): an Event is a courtesy, the status written above the truth.
      void recordEvent(c, record, action);
      return;
    case 'notify':
      c.notifier.notify(policy, {
        kind: action.kind,
        message: action.message,
        record: { namespace: record.metadata?.namespace ?? '', name: record.metadata?.name ?? '', uid },
        image: record.spec.imageRef,
        ...((record.spec.digest ?? record.status?.digest)
          ? { digest: record.spec.digest ?? record.status?.digest }
          : {}),
        targetNode: target,
        ...(record.status?.sourceNode ? { sourceNode: record.status.sourceNode } : {}),
        ...(record.status?.phase ? { phase: record.status.phase } : {}),
        time: new Date(c.clock.now()).toISOString(),
      });
      return;
  }
}

async function recordEvent(
  c: ControllerContext,
  record: SalvageRecord,
  action: Extract<RecordAction, { type: 'event' }>,
) {
  const namespace = record.metadata?.namespace ?? '';
  await c.events.record(
    {
      apiVersion: 'tote.dev/v1alpha1',
      kind: 'SalvageRecord',
      name: record.metadata?.name ?? '',
      namespace,
      uid: record.metadata?.uid ?? '',
    },
    action.eventType,
    action.reason,
    action.message,
  );
  if (!action.onPods) return;
  for (const pod of waitingPods(c, record)) {
    await c.events.record(
      { apiVersion: 'v1', kind: 'Pod', name: pod.name, namespace, uid: pod.uid },
      action.eventType,
      action.reason,
      action.message,
    );
  }
}

/** Where a rescued image goes: `<target>/<registry>/<path>:<tag>`, ports spelled with `-` to stay a valid path. */
export function backupReference(backupTarget: string, imageRef: string, digest: string): string {
  const ref = parseReference(imageRef);
  const tag = ref.tag ?? `sha256-${digest.replace(/^sha256:/, '')}`;
  return `${backupTarget}/${ref.domain.replace(/:/g, '-').toLowerCase()}/${ref.path}:${tag}`;
}

async function startPush(
  c: ControllerContext,
  record: SalvageRecord,
  policy: EffectivePolicy,
  digest: string,
  key: string,
  ctx: ReconcileContext,
): Promise<void> {
  const backup = policy.backup;
  const client = c.agents.client(record.spec.targetNode);
  if (!backup || !client) return;
  const reference = backupReference(backup.target, record.spec.imageRef, digest);
  let username: string | undefined;
  let password: string | undefined;
  let caPem: string | undefined;
  const started = c.clock.now();
  try {
    if (backup.credentialsSecretRef) {
      const secret = await c.secrets.get(backup.credentialsSecretRef.namespace, backup.credentialsSecretRef.name);
      if (!secret)
        throw new Error(
          `Secret ${backup.credentialsSecretRef.namespace}/${backup.credentialsSecretRef.name} does not exist`,
        );
      const credential = credentialsFromSecret(secret)(parseReference(reference).domain);
      if (credential?.kind === 'basic') {
        username = credential.username;
        password = credential.password;
      }
    }
    if (backup.caSecretRef) caPem = (await c.secrets.value(backup.caSecretRef, 'ca.crt')).toString('utf8');
  } catch (err) {
    // A missing Secret fails the push (not the salvage): recorded like any other push failure.
    c.pushes.start({ uid: record.metadata?.uid ?? '', key, run: () => Promise.reject(err) });
    return;
  }
  const launched = c.pushes.start({
    uid: record.metadata?.uid ?? '',
    key,
    run: async (onProgress, signal) => {
      try {
        return await client.pushImage(
          {
            digest,
            reference,
            ...(username !== undefined ? { username } : {}),
            ...(password !== undefined ? { password } : {}),
            ...(caPem !== undefined ? { caPem } : {}),
            insecure: backup.insecure,
          },
          { onProgress, signal },
        );
      } finally {
        c.metrics.pushDuration.observe((c.clock.now() - started) / 1000);
      }
    },
  });
  if (launched) {
    c.metrics.pushAttempts.inc();
    ctx.log.info('backup push started', { reference });
  }
}
