// The controller's own metrics. The names that dashboards and alerts already use (detections, salvage attempts and
// outcomes, pushes, corrupt images, durations, registry resolutions; config/prometheus, config/grafana) must stay as
// they are, labels included; besides them records by phase, live agents, images down to their last copy, and how
// busy the controller's agent channels are.
// Counters are pre-set to 0 for their known labels so rate() and alerts see them before the first incident.
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';
import { Phases, StuckReasons } from '../api/index.ts';
import type { AgentLoad } from './agents/agents.ts';

export interface ControllerMetrics {
  detected: Counter<'reason'>;
  salvageable: Counter;
  notActionable: Counter;
  skipped: Counter<'reason'>;
  podsStillWaiting: Counter<'reason'>;
  salvageAttempts: Counter;
  salvageSuccesses: Counter;
  salvageFailures: Counter;
  pushAttempts: Counter;
  pushSuccesses: Counter;
  pushFailures: Counter;
  corruptImages: Counter;
  salvageDuration: Histogram;
  pushDuration: Histogram;
  registryResolves: Counter<'result'>;
  bytesTransferred: Counter;
  recordsPruned: Counter;
  notifications: Counter<'result'>;
  records: Gauge<'phase'>;
  agentsAlive: Gauge;
  lastCopyImages: Gauge;
  endangeredImages: Gauge<'policy'>;
  lostImages: Gauge<'policy'>;
  protectiveCopies: Counter<'reason'>;
  /** A protecting policy's survey result, or undefined to drop its series (the policy is gone or stopped protecting). */
  observeProtection(policy: string, counts: { endangered: number; lost: number } | undefined): void;
  agentChannelsOpen: Gauge;
  agentQueriesInflight: Gauge;
  agentQueriesQueued: Gauge;
  /** Where the agent gauges read their values at scrape time. */
  observeAgentLoad(source: () => AgentLoad): void;
}

export function controllerMetrics(registry: Registry): ControllerMetrics {
  const registers = [registry];
  let agentLoad = (): AgentLoad => ({ channelsOpen: 0, queriesInflight: 0, queriesQueued: 0 });
  const loadGauge = (name: string, help: string, field: keyof AgentLoad) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(agentLoad()[field]);
      },
    });
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Counter<L>({ name, help, labelNames, registers });
  const m: ControllerMetrics = {
    detected: counter('tote_detected_total', 'Stuck containers detected in scope, by kubelet reason.', ['reason']),
    salvageable: counter('tote_salvageable_total', 'Incidents whose image was found complete on another node.'),
    notActionable: counter('tote_not_actionable_total', 'Incidents tote could not act on (no copy, unresolvable tag).'),
    skipped: counter('tote_skipped_total', 'Incidents skipped by a limit or DetectOnly, by reason.', ['reason']),
    podsStillWaiting: counter(
      'tote_pods_still_waiting_total',
      'Times pods were found still waiting although the image was on their node (PullPolicyAlways, StillWaiting).',
      ['reason'],
    ),
    salvageAttempts: counter('tote_salvage_attempts_total', 'Transfers started (retries included).'),
    salvageSuccesses: counter('tote_salvage_successes_total', 'Images delivered to the node that needed them.'),
    salvageFailures: counter('tote_salvage_failures_total', 'Records that ended Failed.'),
    pushAttempts: counter('tote_push_attempts_total', 'Backup pushes started.'),
    pushSuccesses: counter('tote_push_successes_total', 'Backup pushes that succeeded.'),
    pushFailures: counter('tote_push_failures_total', 'Backup pushes that failed.'),
    corruptImages: counter('tote_corrupt_images_total', 'Corrupt image records (content missing) removed from nodes.'),
    salvageDuration: new Histogram({
      name: 'tote_salvage_duration_seconds',
      help: 'From a record starting to its image being on the target node.',
      buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800],
      registers,
    }),
    pushDuration: new Histogram({
      name: 'tote_push_duration_seconds',
      help: 'Duration of backup pushes.',
      buckets: [1, 2, 5, 10, 30, 60, 120, 300, 600, 1800],
      registers,
    }),
    registryResolves: counter('tote_registry_resolve_total', 'Tag resolutions through a registry, by result.', [
      'result',
    ]),
    bytesTransferred: counter('tote_bytes_transferred_total', 'Bytes moved between nodes by finished transfers.'),
    recordsPruned: counter('tote_records_pruned_total', 'Finished records deleted by the TTL cleaner.'),
    notifications: counter('tote_notifications_total', 'Webhook notifications, by result.', ['result']),
    records: new Gauge({ name: 'tote_records', help: 'SalvageRecords by phase.', labelNames: ['phase'], registers }),
    agentsAlive: new Gauge({ name: 'tote_agents_alive', help: 'Agents whose Lease is current.', registers }),
    lastCopyImages: new Gauge({
      name: 'tote_last_copy_images',
      help: 'Images of active records that survive on exactly one node.',
      registers,
    }),
    endangeredImages: new Gauge({
      name: 'tote_endangered_images',
      help: 'Images in use that no registry serves and fewer than the policy’s minCopies staying nodes hold, by policy.',
      labelNames: ['policy'],
      registers,
    }),
    lostImages: new Gauge({
      name: 'tote_lost_images',
      help: 'Images in use that no registry serves and no node holds completely, by policy.',
      labelNames: ['policy'],
      registers,
    }),
    protectiveCopies: counter(
      'tote_protective_copies_total',
      'Protective copies ordered (records of purpose Protect), by reason.',
      ['reason'],
    ),
    observeProtection: (policy, counts) => {
      if (!counts) {
        m.endangeredImages.remove({ policy });
        m.lostImages.remove({ policy });
        return;
      }
      m.endangeredImages.set({ policy }, counts.endangered);
      m.lostImages.set({ policy }, counts.lost);
    },
    agentChannelsOpen: loadGauge('tote_agent_channels_open', 'gRPC channels open to agents.', 'channelsOpen'),
    agentQueriesInflight: loadGauge(
      'tote_agent_queries_inflight',
      'Image and tag queries to agents running now.',
      'queriesInflight',
    ),
    agentQueriesQueued: loadGauge(
      'tote_agent_queries_queued',
      'Image and tag queries to agents waiting for a slot.',
      'queriesQueued',
    ),
    observeAgentLoad: (source) => {
      agentLoad = source;
    },
  };
  for (const reason of Object.values(StuckReasons)) m.detected.inc({ reason }, 0);
  for (const reason of ['TooLarge', 'DetectOnly']) m.skipped.inc({ reason }, 0);
  for (const result of ['resolved', 'not-found', 'error']) m.registryResolves.inc({ result }, 0);
  for (const result of ['delivered', 'failed']) m.notifications.inc({ result }, 0);
  for (const reason of ['Endangered', 'Evacuation']) m.protectiveCopies.inc({ reason }, 0);
  for (const phase of Object.values(Phases)) m.records.set({ phase }, 0);
  return m;
}
