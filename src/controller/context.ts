// Everything the controller's reconcilers share, built once by the manager. Reconcilers read the world from the
// informer caches and act through the clients here; tests build the same object around a real API server.
import type { KubernetesObject, V1Lease, V1Namespace, V1Node, V1Pod, V1PodTemplateSpec } from '@kubernetes/client-node';
import type { SalvagePolicy, SalvagePolicyProtectionSurvey, SalvageRecord } from '../api/index.ts';
import type { ImportResponse, PushImageResponse } from '../agentapi/index.ts';
import type { Clock } from '../runtime/clock.ts';
import type { Informer } from '../runtime/informer.ts';
import type { KubeClient } from '../runtime/kube.ts';
import type { Logger } from '../runtime/logging.ts';
import type { AgentDirectory } from './agents/agents.ts';
import type { EventRecorder } from './notify/events.ts';
import type { LookupTracker } from './lookups.ts';
import type { ControllerMetrics } from './metrics.ts';
import type { OperationTracker } from './operations.ts';
import type { MachineSettings } from './record/record-machine.ts';
import type { SecretReader } from './secrets.ts';
import type { PinKeeper } from './protection/pin-keeper.ts';
import type { RegistryWatch } from './protection/registry-watch.ts';
import type { Notifier } from './notify/notifier.ts';

/** A Deployment, StatefulSet or DaemonSet as cached (trimWorkload): metadata and the pod template. */
export type Workload = KubernetesObject & { spec?: { template?: V1PodTemplateSpec } };

export interface Caches {
  pods: Informer<V1Pod>;
  /** Deployments, StatefulSets and DaemonSets: the images their pod templates want (protection). */
  deployments: Informer<Workload>;
  statefulSets: Informer<Workload>;
  daemonSets: Informer<Workload>;
  nodes: Informer<V1Node>;
  namespaces: Informer<V1Namespace>;
  policies: Informer<SalvagePolicy>;
  records: Informer<SalvageRecord>;
  agentLeases: Informer<V1Lease>;
}

/** Informer index names. */
export const Indexes = {
  podsByNode: 'node',
  recordsByPolicy: 'policy',
  recordsByNode: 'node',
} as const;

export interface ControllerContext {
  kube: KubeClient;
  clock: Clock;
  log: Logger;
  metrics: ControllerMetrics;
  caches: Caches;
  agents: AgentDirectory;
  imports: OperationTracker<ImportResponse>;
  pushes: OperationTracker<PushImageResponse>;
  /** Agent and registry lookups of record reconciles, run outside them. */
  lookups: LookupTracker;
  events: EventRecorder;
  secrets: SecretReader;
  notifier: Notifier;
  /** Signs a transfer token for `target` to read `digest` from `source`. */
  signToken: (claims: { digest: string; source: string; target: string }) => string;
  machine: MachineSettings;
  /** What the protection reconciler (protection/) keeps between surveys. */
  protection: {
    /** Surveys of protecting policies, run outside reconciles; each re-enqueues its policy's protection key. */
    lookups: LookupTracker;
    registry: RegistryWatch;
    pins: PinKeeper;
    /** By policy: what its last survey in this process found, for its status (policy-reconciler.ts). */
    surveys: Map<string, SalvagePolicyProtectionSurvey>;
    surveyPeriodMs: number;
  };
  /** Surveys a protecting policy's images now (a node is leaving, a protective copy finished). */
  enqueueProtection: (policy: string) => void;
  enqueueRecord: (key: string) => void;
  enqueuePolicy: (name: string) => void;
}
