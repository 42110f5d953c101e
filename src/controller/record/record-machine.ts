// The SalvageRecord state machine, as a pure function: decide(record, observation) → the next status and the actions
// to take. It reads nothing and does nothing; the record reconciler observes the world, calls decide, writes the status
// (one write, conditional on resourceVersion) and only then runs the actions, so intent is recorded before tote calls
// out. Every step is safe to repeat: after a crash the next controller observes, decides the same, and carries on.
//
// Phases: Pending → Resolving → Locating → Transferring → Importing → Restarting → Pushing → Completed, or one of
// Failed / NotActionable / Skipped. Restarting comes before Pushing so the pod runs as soon as the image is on its
// node; the backup push, which never fails a salvage, follows.
import {
  ConditionReasons,
  ConditionTypes,
  formatBytes,
  isFinalPhase,
  Phases,
  removeCondition,
  setCondition,
  truncate,
} from '../../api/index.ts';
import type { HistoryEntry, Phase, SalvageRecord, SalvageRecordStatus } from '../../api/index.ts';
import type { EffectivePolicy } from '../policy/effective-policy.ts';

export const maxHistory = 32;
export const maxPods = 50;

/** How the digest resolution chain ended for this reconcile (asked only while Resolving). */
export type DigestObservation =
  | { kind: 'resolved'; digest: string; source: 'spec' | 'pod' | 'node' | 'agent' | 'registry' }
  | { kind: 'unresolvable'; message: string }
  | { kind: 'error'; message: string };

/**
 * What the target node holds of the image: `complete` when the content is and CRI finds it under every reference the
 * pods use; `unnamed` when the content is complete but a reference lacks its record (an import adds it).
 */
export type TargetImageState = 'complete' | 'unnamed' | 'incomplete' | 'absent' | 'unknown';

/** A node holding a complete copy, with a healthy agent and the target's platform. */
export interface SourceCandidate {
  node: string;
  /** Transfers of this image the node is serving now (only while Locating; undefined: none known). */
  serving?: number;
  /** tote copied the image onto this node minutes ago: among equally busy holders it serves first (fan-out tree). */
  received?: boolean;
}

/** The executor's view of the record's transfer (keyed by record UID); undefined when none runs in this process. */
export interface TransferObservation {
  state: 'transferring' | 'importing' | 'succeeded' | 'failed';
  source: string;
  totalBytes: number;
  presentBytes: number;
  transferredBytes: number;
  totalBlobs: number;
  transferredBlobs: number;
  /** How long it has been running (undefined: not known, progress is written at once). */
  elapsedMs?: number;
  error?: { retryable: boolean; reason: string; message: string };
}

export interface PushObservation {
  state: 'pushing' | 'succeeded' | 'failed';
  /** repository@digest. */
  reference?: string;
  tag?: string;
  /** The backup tag already named this other digest: left alone, the image is there by digest only. */
  tagHeldBy?: string;
  message?: string;
}

export interface WaitingPod {
  name: string;
  uid: string;
  /** The version it was seen waiting at: a deletion is conditional on it, so a pod that changed since is spared. */
  resourceVersion?: string;
  /** Owned by a controller (ReplicaSet, StatefulSet, ...), so deleting it recreates it at once. */
  owned: boolean;
  /** The image references its stuck containers use (by tag, digest or both). */
  references: string[];
  /** A stuck container pulls with imagePullPolicy: Always: no copy on the node can start it. */
  pullsAlways: boolean;
  /** The kubelet could not create a container: containerd reported this blob of the image missing (CreateContainerError). */
  missingContent?: string;
}

export interface RecordObservation {
  now: Date;
  policy: EffectivePolicy;
  /** Only while Resolving. */
  digest?: DigestObservation;
  target: { exists: boolean; agentAlive: boolean; platform?: string; image: TargetImageState };
  /** Only while Locating; best first. */
  candidates?: SourceCandidate[];
  /** Nodes whose agent could not be asked (down, not ready): a copy there is unknown, not absent. */
  unreachableNodes?: string[];
  /** Bytes of the blobs the target needs for its platform, from the best source's plan (only while Locating). */
  imageBytes?: number;
  /** Whether the policy has a free transfer slot (only while Locating). */
  transferSlotFree?: boolean;
  transfer?: TransferObservation;
  push?: PushObservation;
  /** Pods on the target node currently stuck on this image. */
  pods: WaitingPod[];
  /** The record names a policy it may not use (see record-policy.ts): it ends NotActionable, nothing is asked. */
  policyRefused?: { reason: string; message: string };
}

export type RecordAction =
  | { type: 'startTransfer'; source: string; digest: string; references: string[] }
  | { type: 'forgetTransfer' }
  | { type: 'removeCorruptImage'; digest: string }
  | { type: 'deletePod'; name: string; uid: string; resourceVersion?: string }
  | { type: 'startPush'; digest: string }
  | { type: 'event'; eventType: 'Normal' | 'Warning'; reason: string; message: string; onPods: boolean }
  | { type: 'notify'; kind: NotificationKind; message: string }
  | { type: 'reportStuck'; pods: string[]; reason: string; message: string };

export type NotificationKind =
  'Detected' | 'Salvaged' | 'Failed' | 'NotActionable' | 'Skipped' | 'Corrupt' | 'Pushed' | 'PushFailed' | 'LastCopy';

export interface Decision {
  /** The status to write, or undefined when nothing changed. */
  status: SalvageRecordStatus | undefined;
  /** The phases this decision entered, in order (one decision may pass through several). */
  entered: Phase[];
  actions: RecordAction[];
  /** Reconcile again after this many milliseconds even if nothing else happens. */
  requeueAfterMs?: number;
}

export interface MachineSettings {
  /** Transfer attempts before the record Fails. */
  maxAttempts: number;
  /** First retry delay; doubles per attempt. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** A finished record whose image is needed again by a new pod reopens after this long. */
  reopenAfterMs: number;
  /** While a transfer runs, progress is written at most this often. */
  progressIntervalMs: number;
  /**
   * A pod left to the kubelet still waiting this long after the record completed is reported stuck: the kubelet's
   * image pull back-off tops out at five minutes, so by then it has looked again.
   */
  kubeletRetryMs: number;
  /**
   * Transfers of one image one node serves at once. When many nodes need an image together (a DaemonSet's), the
   * others wait for a free holder, and every node that finished serves the next: the image spreads as a tree, so the
   * first source is read a few times instead of once per node, and time grows with the log of the node count.
   */
  transfersPerSource: number;
}

export const defaultMachineSettings: MachineSettings = Object.freeze({
  maxAttempts: 5,
  retryBaseMs: 10_000,
  retryMaxMs: 300_000,
  reopenAfterMs: 600_000,
  progressIntervalMs: 2_000,
  kubeletRetryMs: 330_000,
  transfersPerSource: 1,
});

const technicalDebt =
  'This image is technical debt: it survives only in node caches. Push it to a registry you control and fix the reference.';

export const retryDelayMs = (attempt: number, settings: MachineSettings): number =>
  Math.min(settings.retryBaseMs * 2 ** Math.max(0, attempt - 1), settings.retryMaxMs);

export function decide(
  record: SalvageRecord,
  obs: RecordObservation,
  settings: MachineSettings = defaultMachineSettings,
): Decision {
  const step = new Step(record, obs, settings);
  step.trackPods();
  if (obs.policyRefused && !isFinalPhase(step.phase)) {
    notActionable(step, obs.policyRefused.reason, obs.policyRefused.message);
    return step.result();
  }
  // Phases that follow one another in one reconcile, with nothing done outside tote in between, are one status write:
  // every phase still stands in the history, but the API server sees one write where it saw one per phase.
  for (let moves = 0; moves < maxMovesPerDecision; moves++) {
    const from = step.phase;
    advance(step, from);
    if (step.phase === from || !step.mayGoOn()) break;
  }
  return step.result();
}

/** A bound on the phases one decision passes through (the longest story, Pending to Completed, has seven). */
const maxMovesPerDecision = 8;

/** Actions that reach outside tote: the status recording them is written before they run, so a decision ends there. */
const callsOut: ReadonlySet<RecordAction['type']> = new Set([
  'startTransfer',
  'removeCorruptImage',
  'deletePod',
  'startPush',
]);

function advance(step: Step, phase: Phase): void {
  switch (phase) {
    case Phases.Pending:
      step.enter(Phases.Resolving, 'Detected', describeIncident(step.record));
      step.status.startedAt ??= step.obs.now.toISOString();
      step.notify('Detected', describeIncident(step.record));
      break;
    case Phases.Resolving:
      resolving(step);
      break;
    case Phases.Locating:
      locating(step);
      break;
    case Phases.Transferring:
    case Phases.Importing:
      transferring(step);
      break;
    case Phases.Restarting:
      restarting(step);
      break;
    case Phases.Pushing:
      pushing(step);
      break;
    default:
      finished(step);
  }
}

/** Accumulates one reconcile's status changes and actions. */
class Step {
  readonly record: SalvageRecord;
  readonly obs: RecordObservation;
  readonly settings: MachineSettings;
  readonly status: SalvageRecordStatus;
  readonly actions: RecordAction[] = [];
  readonly entered: Phase[] = [];
  requeueAfterMs: number | undefined;
  /** What the transfer that succeeded in this decision did: the one Event of the rescue tells it with the restart. */
  salvaged: string | undefined;
  private readonly before: string;

  constructor(record: SalvageRecord, obs: RecordObservation, settings: MachineSettings) {
    this.record = record;
    this.obs = obs;
    this.settings = settings;
    this.status = structuredClone(record.status ?? {});
    this.before = JSON.stringify(this.status);
    this.status.observedGeneration = record.metadata?.generation ?? this.status.observedGeneration;
  }

  get phase(): Phase {
    return this.status.phase ?? Phases.Pending;
  }

  get digest(): string | undefined {
    return this.record.spec.digest ?? this.status.digest;
  }

  /** Moves to `phase`, with a history entry and the message; final phases stamp completedAt. */
  enter(phase: Phase, reason: string, message: string): void {
    const now = this.obs.now.toISOString();
    this.status.phase = phase;
    this.entered.push(phase);
    this.status.message = truncate(message, 1024);
    this.addHistory({ time: now, phase, reason, message: truncate(message, 1024) });
    if (isFinalPhase(phase)) {
      this.status.completedAt = now;
      delete this.status.nextRetryAt;
    } else {
      delete this.status.completedAt;
    }
    this.condition(ConditionTypes.Ready, phase === Phases.Completed ? 'True' : 'False', reason, message);
    this.kstatusConditions(phase, reason, message);
  }

  /** Reconciling while the record moves; Stalled once it ended anywhere but Completed (it reopens only on demand). */
  private kstatusConditions(phase: Phase, reason: string, message: string): void {
    const final = isFinalPhase(phase);
    if (final) this.status.conditions = removeCondition(this.status.conditions, ConditionTypes.Reconciling);
    else this.condition(ConditionTypes.Reconciling, 'True', reason, message);
    if (final && phase !== Phases.Completed) this.condition(ConditionTypes.Stalled, 'True', reason, message);
    else this.status.conditions = removeCondition(this.status.conditions, ConditionTypes.Stalled);
  }

  addHistory(entry: HistoryEntry): void {
    const history = [...(this.status.history ?? []), entry];
    this.status.history = history.slice(Math.max(0, history.length - maxHistory));
  }

  condition(type: string, status: 'True' | 'False' | 'Unknown', reason: string, message: string): void {
    this.status.conditions = setCondition(
      this.status.conditions,
      {
        type,
        status,
        reason,
        message,
        ...(this.record.metadata?.generation !== undefined
          ? { observedGeneration: this.record.metadata.generation }
          : {}),
      },
      this.obs.now,
    );
  }

  event(eventType: 'Normal' | 'Warning', reason: string, message: string, onPods = false): void {
    this.actions.push({ type: 'event', eventType, reason, message, onPods });
  }

  notify(kind: NotificationKind, message: string): void {
    this.actions.push({ type: 'notify', kind, message });
  }

  /**
   * Whether the decision may carry on in the phase just entered: not past a call-out (its status must be written
   * first), not past the end, and only into a phase this reconcile observed what it needs for (Locating decides on
   * where the image is; a Resolving that found the digest looked there too).
   */
  mayGoOn(): boolean {
    if (isFinalPhase(this.phase) || this.actions.some((a) => callsOut.has(a.type))) return false;
    switch (this.phase) {
      case Phases.Resolving:
      case Phases.Restarting:
      case Phases.Pushing:
        return true;
      case Phases.Locating:
        return this.obs.candidates !== undefined || !this.obs.target.exists || !this.obs.target.agentAlive;
      default:
        return false;
    }
  }

  requeue(ms: number): void {
    this.requeueAfterMs = this.requeueAfterMs === undefined ? ms : Math.min(this.requeueAfterMs, ms);
  }

  /**
   * Keeps status.pods equal to the pods now waiting, and says in the history when a pod joins. Pods this record
   * restarted are not listed: they are being replaced (a deletion still on its way is not a pod waiting anew).
   */
  trackPods(): void {
    const restarted = new Set((this.status.restartedPods ?? []).map((p) => p.uid));
    const waiting = this.obs.pods.filter((p) => !restarted.has(p.uid));
    const known = new Set((this.status.pods ?? []).map((p) => p.uid));
    const joined = waiting.filter((p) => !known.has(p.uid));
    const podRef = this.record.spec.podRef;
    for (const pod of joined) {
      if (pod.uid === podRef?.uid) continue;
      this.addHistory({
        time: this.obs.now.toISOString(),
        phase: this.phase,
        reason: 'PodJoined',
        message: `pod ${pod.name} also needs this image on ${this.record.spec.targetNode}`,
      });
    }
    if (joined.length > 0 || (this.status.pods ?? []).length !== waiting.length) {
      // Pods that stopped waiting (running, deleted) drop out; the history keeps who was here.
      this.status.pods = waiting.slice(0, maxPods).map(({ name, uid }) => ({ name, uid }));
    }
  }

  result(): Decision {
    const changed = JSON.stringify(this.status) !== this.before;
    return {
      status: changed ? this.status : undefined,
      entered: this.entered,
      actions: this.actions,
      ...(this.requeueAfterMs !== undefined ? { requeueAfterMs: this.requeueAfterMs } : {}),
    };
  }
}

function describeIncident(record: SalvageRecord): string {
  if (record.spec.purpose === 'Protect') {
    const why =
      record.spec.reason === 'Evacuation'
        ? 'a node holding it is leaving the cluster'
        : 'too few nodes hold it and no registry serves it';
    return `protective copy of ${record.spec.imageRef} to ${record.spec.targetNode}: ${why} (${record.spec.reason})`;
  }
  const pod = record.spec.podRef ? `pod ${record.spec.podRef.name}` : 'a manual request';
  const why = record.spec.reason ?? 'Manual';
  return `${pod} needs ${record.spec.imageRef} on ${record.spec.targetNode} (${why})`;
}

function resolving(step: Step): void {
  const { record, obs } = step;
  if (!obs.target.exists) {
    // Before any lookup: no registry call or agent query for an image that has nowhere to go.
    targetGone(step);
    return;
  }
  if (record.spec.digest) {
    step.status.digest = record.spec.digest;
    step.condition(ConditionTypes.Resolved, 'True', ConditionReasons.DigestFromSpec, `digest ${record.spec.digest}`);
    step.enter(Phases.Locating, ConditionReasons.DigestFromSpec, `digest ${record.spec.digest} is named by the record`);
    return;
  }
  const found = obs.digest;
  if (!found) {
    step.requeue(0);
    return;
  }
  switch (found.kind) {
    case 'resolved': {
      const reason = {
        spec: ConditionReasons.DigestFromSpec,
        pod: ConditionReasons.DigestFromPodStatus,
        node: ConditionReasons.DigestFromNodeStatus,
        agent: ConditionReasons.DigestFromAgent,
        registry: ConditionReasons.DigestFromRegistry,
      }[found.source];
      step.status.digest = found.digest;
      step.condition(ConditionTypes.Resolved, 'True', reason, `digest ${found.digest} (from ${found.source})`);
      step.enter(Phases.Locating, reason, `${record.spec.imageRef} is ${found.digest} (from ${found.source})`);
      return;
    }
    case 'unresolvable':
      step.condition(ConditionTypes.Resolved, 'False', ConditionReasons.DigestUnresolvable, found.message);
      notActionable(step, ConditionReasons.DigestUnresolvable, found.message);
      return;
    case 'error':
      retryLater(step, `resolving the digest failed: ${found.message}`);
      return;
  }
}

/** The target node is not in the cluster (deleted since, or a hand-made record naming a node that never was). */
function targetGone(step: Step): void {
  notActionable(
    step,
    'TargetNodeGone',
    `node ${step.record.spec.targetNode} does not exist: there is no node to bring ${step.record.spec.imageRef} to`,
  );
}

function locating(step: Step): void {
  const { record, obs } = step;
  const digest = step.digest;
  if (!digest) {
    step.enter(Phases.Resolving, 'DigestMissing', 'the digest is not known yet');
    return;
  }
  if (!obs.target.exists) {
    targetGone(step);
    return;
  }
  if (!obs.target.agentAlive) {
    retryLater(step, `the agent of ${record.spec.targetNode} is not running; it must receive the image`);
    return;
  }
  if (obs.target.image === 'complete') {
    step.condition(ConditionTypes.Imported, 'True', 'AlreadyPresent', `${digest} is already complete on the node`);
    step.enter(Phases.Restarting, 'AlreadyPresent', `${digest} is already complete on ${record.spec.targetNode}`);
    return;
  }
  if (provablyCorrupt(step)) {
    // A corrupt record makes the kubelet "find" a broken image; it must go before a fresh import or pull.
    step.actions.push({ type: 'removeCorruptImage', digest });
    const message = `${digest} on ${record.spec.targetNode} has an image record whose content is missing; removing it`;
    step.event('Warning', 'CorruptImage', message);
    step.notify('Corrupt', message);
    step.addHistory({ time: obs.now.toISOString(), phase: step.phase, reason: 'CorruptImageRemoved', message });
    step.requeue(0);
    return;
  }
  // A target holding the whole image under other names is its own source: the import moves nothing and adds the names.
  const candidates =
    (obs.candidates ?? []).length === 0 && obs.target.image === 'unnamed'
      ? [{ node: record.spec.targetNode }]
      : (obs.candidates ?? []);
  step.status.candidates = candidates.map((c) => c.node).slice(0, 64);
  if (obs.target.platform) step.status.platform = obs.target.platform;
  if (candidates.length === 0) {
    const unreachable = obs.unreachableNodes ?? [];
    if (unreachable.length > 0 && (step.status.attempts ?? 0) < step.settings.maxAttempts) {
      step.status.attempts = (step.status.attempts ?? 0) + 1;
      retryLater(step, `no reachable node holds ${digest}; agents not answering on ${unreachable.join(', ')}`);
      return;
    }
    step.condition(
      ConditionTypes.SourceFound,
      'False',
      ConditionReasons.NoSurvivingCopy,
      `no node holds a complete copy of ${digest}`,
    );
    notActionable(
      step,
      ConditionReasons.NoSurvivingCopy,
      `no node holds a complete copy of ${digest} for ${obs.target.platform ?? 'the node'}; the image is lost unless a registry still serves it`,
    );
    return;
  }
  const nodes = candidates.map((c) => c.node).join(', ');
  step.condition(
    ConditionTypes.SourceFound,
    'True',
    ConditionReasons.SourceSelected,
    `${digest} is complete on ${nodes}`,
  );
  if (obs.policy.mode === 'DetectOnly') {
    const message = `salvageable: ${record.spec.imageRef} (${digest}) is on ${nodes}; DetectOnly policy ${obs.policy.name ?? ''} moves nothing. ${technicalDebt}`;
    step.event('Warning', 'Salvageable', message, true);
    skip(step, ConditionReasons.DetectOnly, message);
    return;
  }
  if (obs.imageBytes !== undefined && obs.imageBytes > obs.policy.maxImageSizeBytes) {
    const message = `${formatBytes(obs.imageBytes)} exceeds the policy's maxImageSize of ${formatBytes(obs.policy.maxImageSizeBytes)}`;
    step.status.progress = { ...step.status.progress, totalBytes: obs.imageBytes, size: formatBytes(obs.imageBytes) };
    step.event('Warning', 'TooLarge', `not salvaging ${record.spec.imageRef}: ${message}`, true);
    skip(step, ConditionReasons.TooLarge, message);
    return;
  }
  if (obs.transferSlotFree === false) {
    keepWaiting(
      step,
      `waiting for a transfer slot (policy allows ${obs.policy.maxConcurrentTransfers} at once)`,
      5_000,
    );
    return;
  }
  const servers = treeServers(candidates);
  const free = servers.filter((c) => (c.serving ?? 0) < step.settings.transfersPerSource);
  if (free.length === 0) {
    const serverNodes = servers.map((c) => c.node).join(', ');
    const message = `waiting for a free source: every node serving ${digest} (${serverNodes}) is serving ${step.settings.transfersPerSource} transfer(s) of it; each node that finishes serves the next`;
    keepWaiting(step, message, 1_000);
    return;
  }
  const source = pickSource(free, step.status.sourceNode, record.status?.phase === Phases.Transferring);
  startAttempt(
    step,
    source,
    digest,
    `salvageable: ${record.spec.imageRef} (${digest}) is on ${nodes}; copying from ${source} to ${record.spec.targetNode}. ${technicalDebt}`,
  );
  if (candidates.length === 1) step.notify('LastCopy', `${digest} survives only on ${source}`);
}

const waitingPrefix = 'waiting for a ';

/**
 * Says the record waits, once: the status written when the wait began stands until it ends. Meanwhile the holders
 * grow as the image spreads (a tree), and rewriting them (candidates, SourceFound, the message) after every finished
 * transfer would cost each waiting record a write per transfer of its image (bench-scale: most of a burst waits).
 */
function keepWaiting(step: Step, message: string, requeueMs: number): void {
  const before = step.record.status;
  if (before?.phase === Phases.Locating && before.message?.startsWith(waitingPrefix)) {
    step.status.candidates = before.candidates;
    step.status.platform = before.platform;
    step.status.conditions = structuredClone(before.conditions);
  } else {
    step.status.message = message;
  }
  step.requeue(requeueMs);
}

/**
 * Whether the target's copy may be removed: the policy allows it, the kubelet proved the copy cannot run (a container
 * failed with containerd's "content … not found"), the agent confirms blobs are missing, and a complete copy exists on
 * another node to replace it. An incomplete copy alone is not proof (a node with discard_unpacked_layers runs images
 * whose layer blobs are gone), and without another copy removing it would only lose what is left.
 */
function provablyCorrupt(step: Step): boolean {
  const { obs } = step;
  return (
    obs.policy.cleanCorrupt &&
    obs.policy.mode === 'Salvage' &&
    obs.target.image === 'incomplete' &&
    obs.pods.some((p) => p.missingContent !== undefined) &&
    (obs.candidates ?? []).some((c) => c.node !== step.record.spec.targetNode)
  );
}

/**
 * How many nodes must have received an image before the nodes that held it first stop serving it: like the root of a
 * binary tree, the first source seeds two copies and the copies serve the rest. The first source is the one to spare:
 * often the last original copy, on a node that may be draining or running production work, and with one transfer per
 * source, seeding two costs no round (round one copies to one node, round two from both; by round three the received
 * copies outnumber what the first source would add).
 */
export const seedCopies = 2;

/**
 * The holders that may serve: once `seedCopies` nodes have received the image (alive, same platform: they are
 * candidates), only those; before that, every holder.
 */
function treeServers(candidates: SourceCandidate[]): SourceCandidate[] {
  const received = candidates.filter((c) => c.received);
  return received.length >= seedCopies ? received : candidates;
}

/**
 * The least busy candidate — of those a node that has just received the image, which spares the first source (often
 * the last original copy, maybe on a node about to go) — or after a failure the one following the failed source, so
 * each holder gets its turn.
 */
function pickSource(candidates: SourceCandidate[], failed: string | undefined, afterFailure: boolean): string {
  const nodes = candidates.map((c) => c.node);
  if (!afterFailure || failed === undefined) {
    const idlest = Math.min(...candidates.map((c) => c.serving ?? 0));
    const free = candidates.filter((c) => (c.serving ?? 0) === idlest);
    return (free.find((c) => c.received) ?? free[0])?.node ?? '';
  }
  const index = nodes.indexOf(failed);
  return nodes[(index + 1) % nodes.length] ?? '';
}

function startAttempt(step: Step, source: string, digest: string, message: string): void {
  step.status.sourceNode = source;
  step.status.attempts = (step.status.attempts ?? 0) + 1;
  delete step.status.nextRetryAt;
  // No Event yet: the rescue's one Event says how it ended (Salvaged, TransferFailed, SalvageFailed); the status says
  // where it stands meanwhile.
  step.enter(Phases.Transferring, ConditionReasons.SourceSelected, message);
  step.actions.push({
    type: 'startTransfer',
    source,
    digest,
    references: wantedReferences(step.record, step.obs.pods),
  });
}

/**
 * The references the target must resolve, as the kubelet looks them up: the record's own and every waiting pod's (one
 * record serves all pods needing the digest on the node, whether they name it by tag, by digest or both).
 */
export function wantedReferences(record: SalvageRecord, pods: readonly WaitingPod[]): string[] {
  return [...new Set([record.spec.imageRef, ...pods.flatMap((p) => p.references)])];
}

function transferring(step: Step): void {
  const { obs, record } = step;
  const digest = step.digest;
  const source = step.status.sourceNode;
  if (!digest || !source) {
    step.enter(Phases.Locating, 'SourceMissing', 'no source recorded; locating again');
    return;
  }
  const retryAt = step.status.nextRetryAt ? Date.parse(step.status.nextRetryAt) : undefined;
  const transfer = obs.transfer;
  if (!transfer || transfer.source !== source) {
    if (retryAt !== undefined && retryAt > obs.now.getTime()) {
      step.requeue(retryAt - obs.now.getTime());
      return;
    }
    // Nothing runs for this record in this process: first start, a retry that is due, or a controller restart.
    // Starting again is safe: the agent skips blobs already present and resumes partial ones.
    if (retryAt !== undefined) {
      delete step.status.nextRetryAt;
      step.addHistory({
        time: obs.now.toISOString(),
        phase: step.phase,
        reason: 'Retrying',
        message: `attempt ${step.status.attempts ?? 1} from ${source}`,
      });
    }
    step.actions.push({ type: 'startTransfer', source, digest, references: wantedReferences(record, obs.pods) });
    return;
  }
  // A transfer younger than the progress interval shows no progress and no Importing phase: most end within it, and
  // their record goes from Transferring to its end in one write (the end carries the final progress).
  const settling =
    (transfer.state === 'transferring' || transfer.state === 'importing') &&
    transfer.elapsedMs !== undefined &&
    transfer.elapsedMs < step.settings.progressIntervalMs;
  if (!settling) updateProgress(step, transfer);
  switch (transfer.state) {
    case 'transferring':
      step.requeue(step.settings.progressIntervalMs - (settling ? (transfer.elapsedMs ?? 0) : 0));
      return;
    case 'importing':
      if (step.phase !== Phases.Importing && !settling) {
        step.condition(
          ConditionTypes.Transferred,
          'True',
          ConditionReasons.TransferSucceeded,
          transferSummary(transfer),
        );
        step.enter(
          Phases.Importing,
          ConditionReasons.TransferSucceeded,
          `${transferSummary(transfer)}; creating image records`,
        );
      }
      step.requeue(step.settings.progressIntervalMs);
      return;
    case 'succeeded': {
      step.actions.push({ type: 'forgetTransfer' });
      step.condition(ConditionTypes.Transferred, 'True', ConditionReasons.TransferSucceeded, transferSummary(transfer));
      step.condition(
        ConditionTypes.Imported,
        'True',
        ConditionReasons.ImportSucceeded,
        `${digest} is complete on ${record.spec.targetNode}`,
      );
      const message = `salvaged ${record.spec.imageRef} (${digest}) from ${source} to ${record.spec.targetNode}: ${transferSummary(transfer)}`;
      step.salvaged = message;
      step.enter(Phases.Restarting, ConditionReasons.ImportSucceeded, message);
      return;
    }
    case 'failed': {
      step.actions.push({ type: 'forgetTransfer' });
      const error = transfer.error ?? {
        retryable: true,
        reason: ConditionReasons.TransferFailed,
        message: 'unknown error',
      };
      const message = `transfer from ${source} failed: ${error.message}`;
      step.condition(ConditionTypes.Transferred, 'False', error.reason, message);
      const attempts = step.status.attempts ?? 1;
      if (!error.retryable) {
        fail(step, error.reason, `${message}; this cannot succeed by retrying`);
        return;
      }
      if (attempts >= step.settings.maxAttempts) {
        fail(step, ConditionReasons.RetriesExhausted, `${message}; gave up after ${attempts} attempts`);
        return;
      }
      // Another holder may have a good copy even when this one lied or broke; rotate sources on every failure.
      const candidates = (step.status.candidates ?? []).map((node) => ({ node }));
      const next = candidates.length > 0 ? pickSource(candidates, source, true) : source;
      const delay = retryDelayMs(attempts, step.settings);
      step.status.sourceNode = next;
      step.status.attempts = attempts + 1;
      step.status.nextRetryAt = new Date(obs.now.getTime() + delay).toISOString();
      step.status.message = truncate(`${message}; retrying from ${next} in ${Math.round(delay / 1000)}s`, 1024);
      step.addHistory({
        time: obs.now.toISOString(),
        phase: step.phase,
        reason: error.reason,
        message: step.status.message,
      });
      step.event('Warning', 'TransferFailed', step.status.message);
      step.requeue(delay);
      return;
    }
  }
}

function updateProgress(step: Step, t: TransferObservation): void {
  const done = t.presentBytes + t.transferredBytes;
  step.status.progress = {
    totalBytes: t.totalBytes,
    presentBytes: t.presentBytes,
    transferredBytes: t.transferredBytes,
    totalBlobs: t.totalBlobs,
    transferredBlobs: t.transferredBlobs,
    size: formatBytes(t.totalBytes),
    percent: `${t.totalBytes > 0 ? Math.min(100, Math.floor((done / t.totalBytes) * 100)) : 100}%`,
  };
}

const transferSummary = (t: TransferObservation) =>
  `moved ${formatBytes(t.transferredBytes)} in ${t.transferredBlobs} blobs, ${formatBytes(t.presentBytes)} already present`;

/**
 * Restarts, once per record, the owned pods that a new pod would help: deleted (UID precondition), their controllers
 * recreate them and the kubelet finds the image at once. Never pods pulling with imagePullPolicy: Always (the kubelet
 * asks the registry whatever the node holds), and never a second round: pods waiting later (a reopened record) are
 * left to the kubelet's retries and reported, so a pod that cannot start is never deleted over and over.
 */
function restarting(step: Step): void {
  const { obs } = step;
  const firstRound = step.status.restartedPods === undefined;
  const restart = obs.pods.filter((p) => !p.pullsAlways && p.owned && obs.policy.restartPod && firstRound);
  const always = obs.pods.filter((p) => p.pullsAlways).map((p) => p.name);
  const leftAlone = obs.pods.filter((p) => !p.pullsAlways && !restart.includes(p)).map((p) => p.name);
  if (firstRound) {
    step.status.restartedPods = restart.slice(0, maxPods).map(({ name, uid }) => ({ name, uid }));
    // Restarted pods are being replaced, not waiting: listed in restartedPods only (trackPods keeps them out).
    step.status.pods = (step.status.pods ?? []).filter((p) => !restart.some((r) => r.uid === p.uid));
  }
  for (const pod of restart) step.actions.push(deletion(pod));
  const parts: string[] = [];
  // Worded as intent: this status is written before the delete runs (intent first), and a controller killed in between
  // must not leave a history claiming a deletion that never happened. Pushing and Completed finish the act.
  if (restart.length > 0)
    parts.push(`deleting ${restart.map((p) => p.name).join(', ')} so their controllers recreate them now`);
  if (leftAlone.length > 0) {
    const why = !firstRound
      ? 'this record restarted pods once already'
      : obs.policy.restartPod
        ? 'no controller owns them'
        : 'the policy does not restart pods';
    parts.push(`left ${leftAlone.join(', ')} alone (${why}): the kubelet starts them at its next retry`);
  }
  if (always.length > 0) parts.push(pullsAlwaysMessage(always));
  if (parts.length === 0)
    parts.push(
      step.record.spec.purpose === 'Protect'
        ? `a protective copy: ${step.record.spec.targetNode} now holds the image too`
        : 'no pod is waiting any more: they started once the image was on the node',
    );
  const message = parts.join('; ');
  // One Event for the rescue, on the record: what was copied, what happens to the pods, and that the image is debt.
  // Without a transfer in this decision (the image was already there, or an older controller wrote Restarting) the
  // Event says what happens to the pods.
  if (step.salvaged) step.event('Warning', 'Salvaged', `${step.salvaged}; ${message}. ${technicalDebt}`);
  else if (restart.length > 0) step.event('Normal', ConditionReasons.PodRestarted, message);
  else if (leftAlone.length > 0)
    step.event('Normal', ConditionReasons.BarePodLeftAlone, `image is on the node; ${message}`);
  if (always.length > 0) reportStuck(step, ConditionReasons.PullPolicyAlways, pullsAlwaysMessage(always));
  const next = obs.policy.backup ? Phases.Pushing : Phases.Completed;
  if (next === Phases.Completed) complete(step, message);
  else
    step.enter(
      Phases.Pushing,
      ConditionReasons.PodRestarted,
      `${message}; pushing to ${obs.policy.backup?.target ?? ''}`,
    );
}

const pullsAlwaysMessage = (pods: string[]) =>
  `${pods.join(', ')} pull with imagePullPolicy: Always, so the kubelet asks the registry even with the image on the node; set imagePullPolicy: IfNotPresent to run from the salvaged copy`;

/** Deleting exactly this pod as it was seen waiting (UID and resourceVersion preconditions). */
const deletion = (pod: WaitingPod): RecordAction => ({
  type: 'deletePod',
  name: pod.name,
  uid: pod.uid,
  ...(pod.resourceVersion ? { resourceVersion: pod.resourceVersion } : {}),
});

/**
 * Finishes the deletions Restarting recorded: a controller killed between writing that status and deleting leaves
 * those pods waiting. Only the recorded UIDs are deleted (the UID precondition makes a repeat harmless and never touches
 * a replacement), so this can never become a second round.
 */
function restartStrandedPods(step: Step): void {
  const recorded = new Set((step.status.restartedPods ?? []).map((p) => p.uid));
  for (const pod of step.obs.pods) {
    if (recorded.has(pod.uid)) step.actions.push(deletion(pod));
  }
}

/** Says once (per reason and set of pods) that pods still wait although the image is on the node. */
function reportStuck(step: Step, reason: string, message: string): void {
  const current = step.status.conditions?.find((c) => c.type === ConditionTypes.PodsStarted);
  if (current?.status === 'False' && current.reason === reason && current.message === message) return;
  step.condition(ConditionTypes.PodsStarted, 'False', reason, message);
  step.event('Warning', reason, message, true);
  step.actions.push({ type: 'reportStuck', pods: step.obs.pods.map((p) => p.name), reason, message });
}

/** Once no pod waits any more, a PodsStarted=False condition says they did start. */
function reportStarted(step: Step): void {
  const current = step.status.conditions?.find((c) => c.type === ConditionTypes.PodsStarted);
  if (current?.status !== 'False') return;
  step.condition(
    ConditionTypes.PodsStarted,
    'True',
    ConditionReasons.PodsStarted,
    'no pod waits for this image any more',
  );
}

/**
 * Pods waiting on a Completed record whose image is complete and named on the node: not a case for another copy.
 * Pods pulling Always are reported at once; others get the kubelet's longest back-off to find the image first.
 */
function stillWaiting(step: Step): void {
  const { obs } = step;
  restartStrandedPods(step);
  const always = obs.pods.filter((p) => p.pullsAlways).map((p) => p.name);
  if (always.length > 0) {
    reportStuck(step, ConditionReasons.PullPolicyAlways, pullsAlwaysMessage(always));
    return;
  }
  const completedAt = step.status.completedAt ? Date.parse(step.status.completedAt) : obs.now.getTime();
  const waited = obs.now.getTime() - completedAt;
  if (waited < step.settings.kubeletRetryMs) {
    step.requeue(step.settings.kubeletRetryMs - waited);
    return;
  }
  const names = obs.pods.map((p) => p.name).join(', ');
  reportStuck(
    step,
    ConditionReasons.StillWaiting,
    `${names} still wait for ${step.record.spec.imageRef} although it is complete on ${step.record.spec.targetNode}; tote restarts a record's pods at most once: look at the pods' events`,
  );
}

function pushing(step: Step): void {
  const { obs } = step;
  const digest = step.digest;
  restartStrandedPods(step);
  if (!obs.policy.backup || !digest) {
    step.status.backup = { result: 'Skipped', message: 'no backup registry configured' };
    step.condition(
      ConditionTypes.BackedUp,
      'False',
      ConditionReasons.NoBackupConfigured,
      'no backup registry configured',
    );
    complete(step, 'image salvaged; no backup registry configured');
    return;
  }
  const push = obs.push;
  if (!push) {
    step.actions.push({ type: 'startPush', digest });
    return;
  }
  if (push.state === 'pushing') {
    step.requeue(step.settings.progressIntervalMs);
    return;
  }
  const now = obs.now.toISOString();
  if (push.state === 'succeeded') {
    const reference = push.reference ?? '';
    step.status.backup = { result: 'Pushed', reference, ...(push.tag ? { tag: push.tag } : {}), pushedAt: now };
    if (push.tagHeldBy) {
      // Another image holds the tag (another node's copy of a moved tag, a rebuild): overwriting it would lose that one.
      const message = `the backup tag already names ${push.tagHeldBy}; left it alone: this image is at ${reference}`;
      step.status.backup.message = message;
      step.event('Warning', ConditionReasons.BackupTagConflict, message);
    }
    step.condition(ConditionTypes.BackedUp, 'True', ConditionReasons.PushSucceeded, `pushed to ${reference}`);
    step.event('Normal', 'Pushed', `pushed ${digest} to ${reference}`);
    step.notify('Pushed', `pushed ${digest} to ${reference}`);
    complete(step, `image salvaged and backed up to ${reference}`);
    return;
  }
  const message = truncate(push.message ?? 'push failed', 1024);
  step.status.backup = { result: 'Failed', message };
  step.condition(ConditionTypes.BackedUp, 'False', ConditionReasons.PushFailed, message);
  step.event('Warning', 'PushFailed', `backup push of ${digest} failed: ${message}`);
  step.notify('PushFailed', message);
  complete(step, `image salvaged; backup push failed: ${message}`);
}

function finished(step: Step): void {
  const { obs, record } = step;
  // The same image needed again on the same node after the record finished (the image was removed again, or a new pod
  // arrived after a failure): reopen the same record instead of creating a second one.
  const completedAt = step.status.completedAt ? Date.parse(step.status.completedAt) : 0;
  const waiting = obs.pods.length > 0 && obs.target.image !== 'complete';
  const cooledDown = step.phase === Phases.Completed || obs.now.getTime() - completedAt >= step.settings.reopenAfterMs;
  if (waiting && cooledDown && obs.policy.mode === 'Salvage') {
    step.status.attempts = 0;
    delete step.status.sourceNode;
    delete step.status.progress;
    step.enter(
      Phases.Resolving,
      'Reopened',
      `${obs.pods.map((p) => p.name).join(', ')} needs ${record.spec.imageRef} again`,
    );
    return;
  }
  if (waiting && !cooledDown) step.requeue(step.settings.reopenAfterMs - (obs.now.getTime() - completedAt));
  if (step.phase === Phases.Completed && obs.pods.length > 0 && obs.target.image === 'complete') stillWaiting(step);
  if (obs.pods.length === 0) reportStarted(step);
}

function complete(step: Step, message: string): void {
  step.enter(Phases.Completed, 'Completed', message);
  step.notify('Salvaged', `${step.record.spec.imageRef} is on ${step.record.spec.targetNode}: ${message}`);
}

function fail(step: Step, reason: string, message: string): void {
  step.enter(Phases.Failed, reason, message);
  step.event('Warning', 'SalvageFailed', message, true);
  step.notify('Failed', message);
}

function notActionable(step: Step, reason: string, message: string): void {
  step.enter(Phases.NotActionable, reason, message);
  step.event('Warning', 'NotActionable', message, true);
  step.notify('NotActionable', message);
}

function skip(step: Step, reason: string, message: string): void {
  step.enter(Phases.Skipped, reason, message);
  step.notify('Skipped', message);
}

/**
 * Milliseconds until a Resolving or Locating record that is backing off may look again (undefined: it may now). Its own
 * status write re-triggers the reconcile at once; without this gate every such reconcile would ask again and spend an
 * attempt, ignoring the backoff it just wrote.
 */
export function retryPendingMs(record: SalvageRecord, now: Date): number | undefined {
  const phase = record.status?.phase;
  if (phase !== Phases.Resolving && phase !== Phases.Locating) return undefined;
  const at = record.status?.nextRetryAt ? Date.parse(record.status.nextRetryAt) : Number.NaN;
  const wait = at - now.getTime();
  return wait > 0 ? wait : undefined;
}

function retryLater(step: Step, message: string): void {
  const delay = retryDelayMs(Math.max(1, step.status.attempts ?? 1), step.settings);
  step.status.nextRetryAt = new Date(step.obs.now.getTime() + delay).toISOString();
  step.status.message = truncate(`${message}; retrying in ${Math.round(delay / 1000)}s`, 1024);
  step.requeue(delay);
}
