// `tote status` / `kubectl tote status`: what tote is doing now. Records in flight with their progress, images whose
// in-flight records found one complete copy or none (endangered), how finished records ended, the controller's leader
// and every node's agent. summariseStatus is pure; runStatus reads the cluster and prints.
import type { V1Lease, V1Node } from '@kubernetes/client-node';
import { isFinalPhase, SalvageRecordResource } from '../../api/index.ts';
import type { Phase, SalvageRecord } from '../../api/index.ts';
import type { PluginConfig } from '../../runtime/config/index.ts';
import { resources } from '../../runtime/kube.ts';
import { agentsOf, leaderOf } from './cluster-facts.ts';
import type { AgentState, LeaderState } from './cluster-facts.ts';
import { parsePlugin, pluginKube, renderColumns } from './plugin-kube.ts';

export const statusCommand = {
  usage: 'status [flags]',
  description:
    'What tote is doing now: records in flight, endangered images and the nodes holding them, how finished records ended, the controller and every agent.',
  positionals: 0,
};

export interface InFlightRecord {
  namespace: string;
  name: string;
  phase: Phase;
  image: string;
  source: string | undefined;
  target: string;
  progress: string | undefined;
  message: string | undefined;
}

export interface EndangeredImage {
  digest: string;
  image: string;
  /** Nodes known to hold a complete copy (empty: none found). */
  copies: string[];
  /** namespace/name of the records that found this. */
  records: string[];
}

export interface StatusReport {
  controller: LeaderState;
  agents: AgentState[];
  inFlight: InFlightRecord[];
  endangered: EndangeredImage[];
  /** Finished records by final phase. */
  finished: Partial<Record<Phase, number>>;
}

export function summariseStatus(
  records: readonly SalvageRecord[],
  leaderLease: V1Lease | undefined,
  nodes: readonly V1Node[],
  agentLeases: readonly V1Lease[],
  now: number,
): StatusReport {
  const inFlight: InFlightRecord[] = [];
  const endangered = new Map<string, EndangeredImage>();
  const finished: Partial<Record<Phase, number>> = {};
  for (const r of records) {
    const phase = r.status?.phase ?? 'Pending';
    if (isFinalPhase(phase)) {
      finished[phase] = (finished[phase] ?? 0) + 1;
      continue;
    }
    const key = `${r.metadata?.namespace}/${r.metadata?.name}`;
    inFlight.push({
      namespace: r.metadata?.namespace ?? '',
      name: r.metadata?.name ?? '',
      phase,
      image: r.spec.imageRef,
      source: r.status?.sourceNode,
      target: r.spec.targetNode,
      progress: r.status?.progress?.percent,
      message: r.status?.message,
    });
    const digest = r.spec.digest ?? r.status?.digest;
    const copies = r.status?.candidates;
    // Only a record that has located copies knows how many there are.
    if (digest === undefined || copies === undefined || copies.length > 1) continue;
    const entry = endangered.get(digest) ?? { digest, image: r.spec.imageRef, copies: [...copies], records: [] };
    entry.records.push(key);
    endangered.set(digest, entry);
  }
  inFlight.sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  return {
    controller: leaderOf(leaderLease, now),
    agents: agentsOf(nodes, agentLeases, now),
    inFlight,
    endangered: [...endangered.values()].sort((a, b) => a.digest.localeCompare(b.digest)),
    finished,
  };
}

export function renderStatus(report: StatusReport): string {
  const { controller, agents } = report;
  const leader = controller.holder
    ? `${controller.holder}, renewed ${controller.renewedSecondsAgo}s ago${controller.alive ? '' : ' (EXPIRED: down?)'}`
    : 'no leader (is the controller running?)';
  const alive = agents.filter((a) => a.alive).length;
  const finished = Object.entries(report.finished).map(([phase, n]) => `${n} ${phase}`);
  return [
    `Controller: ${leader}`,
    '',
    `Agents: ${alive}/${agents.length} alive`,
    renderColumns(
      ['NODE', 'STATE', 'ADDRESS'],
      agents.map((a) => [a.node, a.alive ? 'alive' : (a.problem ?? 'down'), a.address ?? '-']),
    ),
    `Records in flight: ${report.inFlight.length}`,
    renderColumns(
      ['NAMESPACE', 'RECORD', 'PHASE', 'IMAGE', 'SOURCE', 'TARGET', 'PROGRESS'],
      report.inFlight.map((r) => [r.namespace, r.name, r.phase, r.image, r.source ?? '-', r.target, r.progress ?? '-']),
    ),
    `Endangered images (one copy or none left): ${report.endangered.length}`,
    renderColumns(
      ['DIGEST', 'IMAGE', 'COPIES', 'RECORDS'],
      report.endangered.map((e) => [
        e.digest.slice(0, 19),
        e.image,
        e.copies.length ? e.copies.join(',') : 'none',
        e.records.join(','),
      ]),
    ),
    `Finished records: ${finished.length ? finished.join(', ') : 'none'}`,
    '',
  ].join('\n');
}

export async function runStatus(argv: string[]): Promise<number> {
  const parsed = parsePlugin(statusCommand, argv);
  if ('exitCode' in parsed) return parsed.exitCode;
  const report = await gatherStatus(parsed.config);
  process.stdout.write(parsed.config.output === 'json' ? `${JSON.stringify(report, null, 2)}\n` : renderStatus(report));
  return 0;
}

async function gatherStatus(config: PluginConfig): Promise<StatusReport> {
  const kube = pluginKube(config);
  const [records, leases, nodes] = await Promise.all([
    kube.listAll<SalvageRecord & { metadata: object }>(SalvageRecordResource).then((l) => l.items),
    kube.listAll<V1Lease>(resources.leases, config.toteNamespace).then((l) => l.items),
    kube.listAll<V1Node>(resources.nodes).then((l) => l.items),
  ]);
  const leader = leases.find((l) => l.metadata?.name === config.leaderElectionId);
  return summariseStatus(records, leader, nodes, leases, Date.now());
}
