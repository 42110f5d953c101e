// Words shared by the controller, the agent and the API: phases, condition types, reasons, labels and annotations.
// Conditions and Events use these constants, never ad-hoc strings, so that alerts and tests can rely on them.
import type { SalvageRecordStatus, SalvagePolicySpec } from '../../generated/api/v1alpha1.ts';

export const group = 'tote.dev';
export const version = 'v1alpha1';
export const apiVersion = `${group}/${version}`;

export type Phase = NonNullable<SalvageRecordStatus['phase']>;
export type PolicyMode = NonNullable<SalvagePolicySpec['mode']>;

export const Phases = {
  Pending: 'Pending',
  Resolving: 'Resolving',
  Locating: 'Locating',
  Transferring: 'Transferring',
  Importing: 'Importing',
  Pushing: 'Pushing',
  Restarting: 'Restarting',
  Completed: 'Completed',
  Failed: 'Failed',
  NotActionable: 'NotActionable',
  Skipped: 'Skipped',
} as const satisfies Record<Phase, Phase>;

/** Phases after which the record does nothing more; the TTL cleaner counts from completedAt. */
export const finalPhases: ReadonlySet<Phase> = new Set([
  Phases.Completed,
  Phases.Failed,
  Phases.NotActionable,
  Phases.Skipped,
]);
export const isFinalPhase = (phase: Phase | undefined): boolean => phase !== undefined && finalPhases.has(phase);

/** Why a container is stuck, as the kubelet reports it in containerStatuses[].state.waiting.reason. */
export const StuckReasons = {
  ErrImagePull: 'ErrImagePull',
  ImagePullBackOff: 'ImagePullBackOff',
  CreateContainerError: 'CreateContainerError',
} as const;
export type StuckReason = (typeof StuckReasons)[keyof typeof StuckReasons];

export const ConditionTypes = {
  /** Policy: in force. Record: the image is usable on the target node. */
  Ready: 'Ready',
  Resolved: 'Resolved',
  SourceFound: 'SourceFound',
  Transferred: 'Transferred',
  Imported: 'Imported',
  BackedUp: 'BackedUp',
  /** Record: every pod that waited on the image has started (False names the ones still waiting, and why). */
  PodsStarted: 'PodsStarted',
  /**
   * kstatus' "abnormal-true" pair, read by Flux, Argo CD and `kubectl wait`: present and True only while it applies,
   * removed otherwise. Reconciling: the record is still moving through its phases. Stalled: the object reached a state
   * the controller cannot get out of without a change from a person (a final phase other than Completed; a policy whose
   * Secret is missing or invalid).
   */
  Reconciling: 'Reconciling',
  Stalled: 'Stalled',
} as const;

export const ConditionReasons = {
  // Policy
  PolicyAccepted: 'PolicyAccepted',
  SecretNotFound: 'SecretNotFound',
  SecretInvalid: 'SecretInvalid',
  /** A Secret named outside tote's own namespace, the only one whose Secrets it may read. */
  SecretOutOfScope: 'SecretOutOfScope',
  SelectorInvalid: 'SelectorInvalid',
  /** A field the API server admitted but tote cannot read (an older CRD): the field is named in the message. */
  SpecInvalid: 'SpecInvalid',
  // Record
  /** The record names a policy that does not select its namespace (and image). */
  PolicyNotInScope: 'PolicyNotInScope',
  DigestFromPodStatus: 'DigestFromPodStatus',
  DigestFromNodeStatus: 'DigestFromNodeStatus',
  DigestFromAgent: 'DigestFromAgent',
  DigestFromRegistry: 'DigestFromRegistry',
  DigestFromSpec: 'DigestFromSpec',
  DigestUnresolvable: 'DigestUnresolvable',
  NoSurvivingCopy: 'NoSurvivingCopy',
  SourceSelected: 'SourceSelected',
  TooLarge: 'TooLarge',
  DetectOnly: 'DetectOnly',
  TransferSucceeded: 'TransferSucceeded',
  TransferFailed: 'TransferFailed',
  ImportSucceeded: 'ImportSucceeded',
  PushSucceeded: 'PushSucceeded',
  PushFailed: 'PushFailed',
  NoBackupConfigured: 'NoBackupConfigured',
  /** The backup push found its tag naming another image and left the tag alone. */
  BackupTagConflict: 'BackupTagConflict',
  PodRestarted: 'PodRestarted',
  BarePodLeftAlone: 'BarePodLeftAlone',
  /** The pod pulls with imagePullPolicy: Always: the kubelet asks the registry even with the image on the node. */
  PullPolicyAlways: 'PullPolicyAlways',
  /** Pods still wait after the record restarted its pods once: left to the kubelet's retries, reported. */
  StillWaiting: 'StillWaiting',
  PodsStarted: 'PodsStarted',
  RetriesExhausted: 'RetriesExhausted',
} as const;

/** Namespaces tote never acts in, whatever a policy says. */
export const systemNamespaces: ReadonlySet<string> = new Set(['kube-system', 'kube-public', 'kube-node-lease']);

export const Labels = {
  managedBy: 'app.kubernetes.io/managed-by',
  targetNode: 'tote.dev/target-node',
  digest: 'tote.dev/digest',
  policy: 'tote.dev/policy',
} as const;

/**
 * Opt-in annotations that clusters already carry on namespaces, pods and workloads (set for the Go version of tote):
 * honoured where no policy selects a pod, so those workloads stay in scope. Keep the names as they are.
 */
export const Annotations = {
  /** On a namespace: "true" lets tote act on its pods. */
  allowNamespace: 'tote.dev/allow',
  /** On a pod or its owner: "true" opts the workload in. */
  autoSalvage: 'tote.dev/auto-salvage',
} as const;
