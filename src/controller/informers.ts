// What the controller watches, and which keys each change enqueues. Level-triggered: a handler decides nothing beyond
// "could this matter" and only enqueues; the reconcile reads the world and converges.
import type { KubernetesObject, V1Lease, V1Namespace, V1Node, V1Pod } from '@kubernetes/client-node';
import {
  agentLeaseSelector,
  isFinalPhase,
  Phases,
  SalvagePolicyResource,
  SalvageRecordResource,
} from '../api/index.ts';
import type { SalvagePolicy, SalvageRecord } from '../api/index.ts';
import type { ControllerConfig } from '../runtime/config/index.ts';
import { createInformer, enqueueHandler } from '../runtime/informer.ts';
import type { InformerOptions } from '../runtime/informer.ts';
import { objectKey, resources } from '../runtime/kube.ts';
import type { KubeClient } from '../runtime/kube.ts';
import { trimNode, trimPod, trimWorkload } from '../runtime/trim.ts';
import type { WorkQueue } from '../runtime/workqueue.ts';
import { Indexes } from './context.ts';
import type { Caches, ControllerContext, Workload } from './context.ts';
import { detectStuckContainers } from './pod/detection.ts';
import { leavingReason } from './protection/leaving-nodes.ts';

export type Queues = { pods: WorkQueue; records: WorkQueue; policies: WorkQueue; protection: WorkQueue };

/** One informer per kind the reconcilers read, with the indexes they look things up by. */
export function createCaches(
  kube: KubeClient,
  config: ControllerConfig,
  informerOptions: Pick<InformerOptions<KubernetesObject>, 'clock' | 'logger' | 'metrics' | 'resyncPeriodMs'>,
): Caches {
  return {
    pods: createInformer<V1Pod>(kube, resources.pods, {
      ...informerOptions,
      transform: trimPod,
      indexers: { [Indexes.podsByNode]: (p) => (p.spec?.nodeName ? [p.spec.nodeName] : []) },
    }),
    nodes: createInformer<V1Node>(kube, resources.nodes, { ...informerOptions, transform: trimNode }),
    deployments: createInformer<Workload>(kube, resources.deployments, { ...informerOptions, transform: trimWorkload }),
    statefulSets: createInformer<Workload>(kube, resources.statefulSets, {
      ...informerOptions,
      transform: trimWorkload,
    }),
    daemonSets: createInformer<Workload>(kube, resources.daemonSets, { ...informerOptions, transform: trimWorkload }),
    namespaces: createInformer<V1Namespace>(kube, resources.namespaces, informerOptions),
    policies: createInformer<SalvagePolicy & KubernetesObject>(kube, SalvagePolicyResource, informerOptions),
    records: createInformer<SalvageRecord & KubernetesObject>(kube, SalvageRecordResource, {
      ...informerOptions,
      indexers: {
        [Indexes.recordsByPolicy]: (r) => (r.spec.policyRef?.name ? [r.spec.policyRef.name] : []),
        [Indexes.recordsByNode]: (r) => [r.spec.targetNode],
      },
    }),
    agentLeases: createInformer<V1Lease>(kube, resources.leases, {
      ...informerOptions,
      name: 'agent-leases',
      namespace: config.agentNamespace,
      labelSelector: agentLeaseSelector,
    }),
  };
}
/** Informer events → keys. Each handler is cheap and decides nothing beyond "could this matter". */
export function wireHandlers(
  c: ControllerContext,
  caches: Caches,
  queues: Queues,
  namespaces: readonly string[],
): void {
  const watched = (ns: string | undefined) => namespaces.length === 0 || (ns !== undefined && namespaces.includes(ns));
  const enqueueStuckPod = (pod: V1Pod) => {
    if (watched(pod.metadata?.namespace) && detectStuckContainers(pod).length > 0) queues.pods.add(objectKey(pod));
  };
  caches.pods.addEventHandler({ add: enqueueStuckPod, update: (_old, pod) => enqueueStuckPod(pod) });
  // A pod that started running an image is a new image in use for the protecting policies: survey them soon (after a
  // short delay, so a rollout of many pods makes one survey).
  const protectingPoliciesSoon = () => {
    for (const p of caches.policies.list())
      if (p.spec.protection) queues.protection.addAfter(p.metadata?.name ?? '', protectionSettleMs);
  };
  caches.pods.addEventHandler({
    add: (pod) => {
      if (imageIds(pod) !== '') protectingPoliciesSoon();
    },
    update: (old, pod) => {
      if (imageIds(old) !== imageIds(pod)) protectingPoliciesSoon();
    },
  });
  // A workload whose pod template names other images (a rollout, a new workload) may want an image no pod runs yet.
  for (const workloads of [caches.deployments, caches.statefulSets, caches.daemonSets]) {
    workloads.addEventHandler({
      add: protectingPoliciesSoon,
      update: (old, w) => {
        if (templateImages(old) !== templateImages(w)) protectingPoliciesSoon();
      },
    });
  }

  caches.records.addEventHandler(
    enqueueHandler<SalvageRecord & KubernetesObject>(
      (key) => queues.records.add(key),
      (r) => {
        if (r.spec.policyRef?.name) c.enqueuePolicy(r.spec.policyRef.name);
        // A protective copy that finished (or failed) changes the count of copies: survey its policy again.
        if (r.spec.purpose === 'Protect' && r.spec.policyRef?.name && isFinalPhase(r.status?.phase))
          queues.protection.add(r.spec.policyRef.name);
        return [objectKey(r)];
      },
    ),
  );

  const stuckPodsEverywhere = () => {
    for (const pod of caches.pods.list()) enqueueStuckPod(pod);
  };
  const policyChanged = enqueueHandler<SalvagePolicy & KubernetesObject>(
    (name) => queues.policies.add(name),
    (p) => {
      stuckPodsEverywhere();
      queues.protection.add(p.metadata?.name ?? '');
      return [p.metadata?.name ?? ''];
    },
  );
  caches.policies.addEventHandler({
    ...policyChanged,
    // A write of the policy's status (its counters, by tote during a burst of incidents) changes nothing a reconcile
    // reads: enqueuing on it re-read every stuck pod and wrote the counters again as soon as the write came back.
    // Records enqueue their policy themselves (enqueuePolicy, gathered over seconds). A resync (same version) passes.
    update: (old, p) => {
      if (!onlyStatusChanged(old, p)) policyChanged.update?.(old, p);
    },
  });

  caches.namespaces.addEventHandler({
    update: (old, ns) => {
      // Scope depends on labels (policy selectors) and annotations (the tote.dev/allow opt-in): either may matter.
      const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
      if (same(old.metadata?.labels, ns.metadata?.labels) && same(old.metadata?.annotations, ns.metadata?.annotations))
        return;
      for (const pod of caches.pods.list(ns.metadata?.name)) enqueueStuckPod(pod);
    },
  });

  const activeRecordsOn = (node: string) => {
    for (const r of caches.records.byIndex(Indexes.recordsByNode, node)) {
      if (!isFinalPhase(r.status?.phase)) queues.records.add(objectKey(r));
    }
  };
  // A node starting to leave (cordon, removal taint) or gone changes which copies count: every protecting policy
  // surveys at once, so evacuation starts before the drain ends.
  const protectingPolicies = () => {
    for (const p of caches.policies.list()) if (p.spec.protection) queues.protection.add(p.metadata?.name ?? '');
  };
  caches.nodes.addEventHandler({
    add: (n) => activeRecordsOn(n.metadata?.name ?? ''),
    update: (old, n) => {
      if (leavingReason(old) !== leavingReason(n)) protectingPolicies();
    },
    delete: (n) => {
      activeRecordsOn(n.metadata?.name ?? '');
      protectingPolicies();
    },
  });

  // An agent appearing or vanishing changes where images can come from: records still looking for a source re-run.
  const agentsChanged = () => {
    c.metrics.agentsAlive.set(c.agents.alive().size);
    for (const r of caches.records.list()) {
      const phase = r.status?.phase;
      if (phase === Phases.Resolving || phase === Phases.Locating) queues.records.add(objectKey(r));
    }
  };
  caches.agentLeases.addEventHandler({ add: agentsChanged, delete: agentsChanged });
}

/** How long pod starts are gathered before the protecting policies survey them. */
const protectionSettleMs = 2_000;

/** The image digests a pod's containers run, as the kubelet reports them (empty until one starts). */
const imageIds = (pod: V1Pod): string =>
  [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])]
    .map((s) => s.imageID ?? '')
    .join(',');

/** The images a workload's pod template names. */
const templateImages = (w: Workload): string =>
  [...(w.spec?.template?.spec?.initContainers ?? []), ...(w.spec?.template?.spec?.containers ?? [])]
    .map((c) => c.image ?? '')
    .join(',');

/** On becoming leader: everything cached is work once. */
export function enqueueAll(c: ControllerContext, caches: Caches, queues: Queues): void {
  for (const pod of caches.pods.list()) if (detectStuckContainers(pod).length > 0) queues.pods.add(objectKey(pod));
  for (const r of caches.records.list()) queues.records.add(objectKey(r));
  for (const p of caches.policies.list()) {
    queues.policies.add(p.metadata?.name ?? '');
    queues.protection.add(p.metadata?.name ?? '');
  }
  c.metrics.agentsAlive.set(c.agents.alive().size);
}

/** A new version of the object whose spec and the metadata tote reads are the old one's: its status changed. */
export function onlyStatusChanged(
  old: KubernetesObject & { spec?: unknown },
  obj: KubernetesObject & { spec?: unknown },
) {
  const read = (o: KubernetesObject & { spec?: unknown }) =>
    JSON.stringify([
      o.spec,
      o.metadata?.generation,
      o.metadata?.labels,
      o.metadata?.annotations,
      o.metadata?.deletionTimestamp,
    ]);
  return old.metadata?.resourceVersion !== obj.metadata?.resourceVersion && read(old) === read(obj);
}
