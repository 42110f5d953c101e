// `tote salvage POD` / `kubectl tote salvage POD`: creates the SalvageRecord a person would write by hand to ask for a
// transfer (reason Manual) for one container of the pod, named as the controller would name it, so the controller's
// own detection joins it rather than making a second one. The person needs tote-record-editor in the namespace.
import type { KubernetesObject, V1Node, V1Pod } from '@kubernetes/client-node';
import { apiVersion, recordName, SalvageRecordResource } from '../../api/index.ts';
import type { SalvageRecord } from '../../api/index.ts';
import { incidentsOf } from '../../controller/pod/incidents.ts';
import { resources } from '../../runtime/kube.ts';
import { parsePlugin, pluginKube, podNamespace } from './plugin-kube.ts';

export const salvageCommand = {
  usage: 'salvage POD [-n NAMESPACE] [-c CONTAINER] [flags]',
  description:
    "Asks tote to put a pod's image on the pod's node: creates the SalvageRecord for it (reason Manual), the one tote itself would create for a stuck container. Without -c, the pod's one stuck container.",
  positionals: 1,
};

/** The record for `container` of `pod` (default: its one stuck container), or why there is none. */
export function manualRecord(
  pod: V1Pod,
  nodes: readonly V1Node[],
  container: string | undefined,
): { record: SalvageRecord } | { problem: string } {
  const name = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
  const node = pod.spec?.nodeName;
  if (!node) return { problem: `pod ${name} is not scheduled to a node yet: there is no node to put the image on` };
  const incidents = incidentsOf(pod, nodes);
  const chosen = container ?? (incidents.length === 1 ? incidents[0]?.container : undefined);
  if (!chosen) {
    const stuck = incidents.map((i) => i.container);
    return {
      problem: stuck.length
        ? `pod ${name} has several stuck containers (${stuck.join(', ')}): pick one with -c`
        : `pod ${name} has no container stuck on its image: pick one with -c to ask anyway`,
    };
  }
  const spec = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find((c) => c.name === chosen);
  if (!spec?.image) return { problem: `pod ${name} has no container ${chosen}` };
  const digest = incidents.find((i) => i.container === chosen)?.digest;
  return {
    record: {
      apiVersion,
      kind: 'SalvageRecord',
      metadata: { name: recordName({ digest, imageRef: spec.image, node }), namespace: pod.metadata?.namespace ?? '' },
      spec: {
        imageRef: spec.image,
        ...(digest ? { digest } : {}),
        targetNode: node,
        reason: 'Manual',
        podRef: { name: pod.metadata?.name ?? '', uid: pod.metadata?.uid ?? '' },
        container: chosen,
      },
    },
  };
}

export async function runSalvage(argv: string[]): Promise<number> {
  const parsed = parsePlugin(salvageCommand, argv);
  if ('exitCode' in parsed) return parsed.exitCode;
  const { config, args } = parsed;
  const namespace = podNamespace(config);
  const kube = pluginKube(config);
  const pod = await kube.getOrUndefined<V1Pod>(resources.pods, args[0] ?? '', namespace);
  if (!pod) {
    process.stderr.write(`pod ${args[0]} not found in namespace ${namespace}\n`);
    return 1;
  }
  const made = manualRecord(pod, (await kube.listAll<V1Node>(resources.nodes)).items, config.container);
  if ('problem' in made) {
    process.stderr.write(`${made.problem}\n`);
    return 1;
  }
  const { object, created } = await kube.createOrGet(SalvageRecordResource, made.record as KubernetesObject);
  const record = object as SalvageRecord;
  const where = `${record.metadata?.namespace}/${record.metadata?.name}`;
  process.stdout.write(
    config.output === 'json'
      ? `${JSON.stringify(record, null, 2)}\n`
      : created
        ? `salvagerecord ${where} created: watch it with kubectl -n ${namespace} get salvagerecord ${record.metadata?.name} -w\n`
        : `salvagerecord ${where} already exists (${record.status?.phase ?? 'Pending'}): tote is on it\n`,
  );
  return 0;
}
