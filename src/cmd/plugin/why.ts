// `tote why POD` / `kubectl tote why POD`: for each container of a pod, whether tote may act on it, under which policy,
// which record carries the incident, and what happens next. explainPod is pure (the facts in, one verdict per
// container out); runWhy reads the facts from the cluster with the same scope rules the controller uses.
import type { V1Lease, V1Namespace, V1Node, V1Pod } from '@kubernetes/client-node';
import { Annotations, SalvagePolicyResource, SalvageRecordResource } from '../../api/index.ts';
import type { SalvagePolicy, SalvageRecord } from '../../api/index.ts';
import { incidentsOf } from '../../controller/pod/incidents.ts';
import type { Incident } from '../../controller/pod/incidents.ts';
import { repositoryOf } from '../../controller/pod/node-images.ts';
import { ownerAnnotations } from '../../controller/pod/pod-reconciler.ts';
import { decideScope, scopeSubject } from '../../controller/policy/policy-match.ts';
import type { PluginConfig } from '../../runtime/config/index.ts';
import { resources } from '../../runtime/kube.ts';
import { leaderOf } from './cluster-facts.ts';
import type { LeaderState } from './cluster-facts.ts';
import { parsePlugin, pluginKube, podNamespace } from './plugin-kube.ts';

export const whyCommand = {
  usage: 'why POD [-n NAMESPACE] [flags]',
  description:
    "Explains what tote makes of a pod: for each container, whether it is stuck on its image, whether a policy puts it in tote's scope, which SalvageRecord carries it, and what happens next.",
  positionals: 1,
};

export interface WhyFacts {
  pod: V1Pod;
  namespace: V1Namespace | undefined;
  policies: readonly SalvagePolicy[];
  /** Annotations of the pod's controller owners, nearest first (the annotation opt-in reads them). */
  ownerAnnotations: Record<string, string>[];
  nodes: readonly V1Node[];
  /** SalvageRecords in the pod's namespace. */
  records: readonly SalvageRecord[];
  controller: LeaderState;
}

export interface ContainerVerdict {
  container: string;
  image: string;
  /** The kubelet's reason and message when the container is stuck on its image. */
  stuck: { reason: string; message: string } | undefined;
  inScope: boolean;
  /** The governing policy's name and mode; undefined when out of scope or opted in by annotations. */
  policy: { name: string; mode: string } | undefined;
  /** Why the pod is out of scope, or how it came in without a policy. */
  scope: string;
  record: { name: string; phase: string; message: string | undefined } | undefined;
  next: string;
}

export function explainPod(facts: WhyFacts): ContainerVerdict[] {
  const incidents = new Map(incidentsOf(facts.pod, facts.nodes).map((i) => [i.container, i]));
  const containers = [...(facts.pod.spec?.initContainers ?? []), ...(facts.pod.spec?.containers ?? [])];
  return containers.map((c) => explainContainer(facts, c.name, c.image ?? '', incidents.get(c.name)));
}

function explainContainer(
  facts: WhyFacts,
  container: string,
  image: string,
  incident: Incident | undefined,
): ContainerVerdict {
  const stuck = incident ? { reason: incident.reason, message: incident.message } : undefined;
  const repository = repositoryOf(image);
  if (!repository) {
    const next = 'nothing: the image reference is malformed, which no copy on another node can fix';
    return {
      container,
      image,
      stuck,
      inScope: false,
      policy: undefined,
      scope: 'malformed image',
      record: undefined,
      next,
    };
  }
  const scope = decideScope(
    facts.policies,
    scopeSubject(facts.pod, facts.namespace, repository, facts.ownerAnnotations),
  );
  const policy =
    scope.inScope && scope.policy
      ? { name: scope.policy.metadata?.name ?? '', mode: scope.policy.spec.mode ?? 'Salvage' }
      : undefined;
  const scopeText = !scope.inScope
    ? scope.why
    : policy
      ? `SalvagePolicy ${policy.name} (${policy.mode})`
      : `opted in by the ${Annotations.allowNamespace} and ${Annotations.autoSalvage} annotations, with tote's defaults`;
  const found = recordFor(facts, container, image, incident);
  const record = found
    ? { name: found.metadata?.name ?? '', phase: found.status?.phase ?? 'Pending', message: found.status?.message }
    : undefined;
  return {
    container,
    image,
    stuck,
    inScope: scope.inScope,
    policy,
    scope: scopeText,
    record,
    next: nextStep({ stuck, inScope: scope.inScope, policy, record, found, controller: facts.controller }),
  };
}

/** The record carrying this container: the one naming the pod and container, else the incident's by name. */
function recordFor(
  facts: WhyFacts,
  container: string,
  image: string,
  incident: Incident | undefined,
): SalvageRecord | undefined {
  const uid = facts.pod.metadata?.uid;
  const namesPod = (r: SalvageRecord) =>
    (r.spec.podRef?.uid === uid && (r.spec.container ?? container) === container) ||
    (r.spec.imageRef === image && (r.status?.pods ?? []).some((p) => p.uid === uid));
  return (
    facts.records.find(namesPod) ??
    (incident ? facts.records.find((r) => r.metadata?.name === incident.recordName) : undefined)
  );
}

function nextStep(v: {
  stuck: ContainerVerdict['stuck'];
  inScope: boolean;
  policy: ContainerVerdict['policy'];
  record: ContainerVerdict['record'];
  found: SalvageRecord | undefined;
  controller: LeaderState;
}): string {
  if (v.record && v.found) return recordNext(v.found, Boolean(v.stuck));
  if (!v.stuck) return 'nothing: the container is not stuck on its image';
  if (!v.inScope) return 'nothing: tote leaves pods out of its scope alone (select it with a SalvagePolicy)';
  if (!v.controller.alive)
    return 'nothing yet: no live tote controller holds the leader Lease; a record is created once one runs';
  return v.policy?.mode === 'DetectOnly'
    ? 'the controller records the incident (DetectOnly: it reports the surviving copies, moves nothing)'
    : 'the controller creates a SalvageRecord for it on its next look, then finds a copy and moves it here';
}

function recordNext(record: SalvageRecord, stillStuck: boolean): string {
  const s = record.status ?? {};
  const retry = s.nextRetryAt ? ` (next try ${s.nextRetryAt})` : '';
  switch (s.phase ?? 'Pending') {
    case 'Pending':
    case 'Resolving':
      return `the controller resolves the image's digest${retry}`;
    case 'Locating':
      return `the controller looks for a node holding a complete copy${retry}`;
    case 'Transferring':
    case 'Importing':
      return `the image is being copied from ${s.sourceNode ?? 'another node'} to ${record.spec.targetNode}${s.progress?.percent ? ` (${s.progress.percent})` : ''}`;
    case 'Restarting':
      return 'the image is on the node; the controller restarts the pod so it starts at once';
    case 'Pushing':
      return 'the image is on the node; the controller pushes it to the backup registry';
    case 'Completed':
      return stillStuck
        ? 'the image is on the node; the kubelet starts the container on its next retry (at most 5 minutes)'
        : 'nothing: the salvage completed';
    case 'Failed':
      return `nothing for now: the salvage failed (${s.message ?? 'see the record'}); it reopens after a cool-down if a pod still needs the image`;
    case 'Skipped':
      return `nothing: the record was skipped (${s.message ?? 'see the record'})`;
    default:
      return `nothing: ${s.message ?? 'tote cannot act on this image'}`;
  }
}

export function renderWhy(pod: V1Pod, verdicts: readonly ContainerVerdict[]): string {
  const lines = [`Pod ${pod.metadata?.namespace}/${pod.metadata?.name} on ${pod.spec?.nodeName ?? '(not scheduled)'}`];
  for (const v of verdicts) {
    lines.push('', `container ${v.container} (${v.image})`);
    lines.push(`  state:  ${v.stuck ? `${v.stuck.reason}: ${v.stuck.message}` : 'not stuck on its image'}`);
    lines.push(`  scope:  ${v.inScope ? 'in scope, ' : 'out of scope: '}${v.scope}`);
    lines.push(
      `  record: ${v.record ? `${v.record.name}, ${v.record.phase}${v.record.message ? `: ${v.record.message}` : ''}` : 'none'}`,
    );
    lines.push(`  next:   ${v.next}`);
  }
  return `${lines.join('\n')}\n`;
}

export async function runWhy(argv: string[]): Promise<number> {
  const parsed = parsePlugin(whyCommand, argv);
  if ('exitCode' in parsed) return parsed.exitCode;
  const { config, args } = parsed;
  const namespace = podNamespace(config);
  const facts = await gatherFacts(config, namespace, args[0] ?? '');
  if (!facts) {
    process.stderr.write(`pod ${args[0]} not found in namespace ${namespace}\n`);
    return 1;
  }
  const verdicts = explainPod(facts);
  process.stdout.write(
    config.output === 'json' ? `${JSON.stringify(verdicts, null, 2)}\n` : renderWhy(facts.pod, verdicts),
  );
  return 0;
}

async function gatherFacts(config: PluginConfig, namespace: string, name: string): Promise<WhyFacts | undefined> {
  const kube = pluginKube(config);
  const pod = await kube.getOrUndefined<V1Pod>(resources.pods, name, namespace);
  if (!pod) return undefined;
  const [ns, policies, nodes, records, leader, owners] = await Promise.all([
    kube.getOrUndefined<V1Namespace>(resources.namespaces, namespace),
    kube.listAll<SalvagePolicy & { metadata: object }>(SalvagePolicyResource).then((l) => l.items),
    kube.listAll<V1Node>(resources.nodes).then((l) => l.items),
    kube.listAll<SalvageRecord & { metadata: object }>(SalvageRecordResource, namespace).then((l) => l.items),
    kube.getOrUndefined<V1Lease>(resources.leases, config.leaderElectionId, config.toteNamespace),
    ownerAnnotations(kube, pod),
  ]);
  return {
    pod,
    namespace: ns,
    policies,
    ownerAnnotations: owners,
    nodes,
    records,
    controller: leaderOf(leader, Date.now()),
  };
}
