// The agent's Prometheus metrics. Registered on the Registry the caller passes (the agent's /metrics endpoint, or a
// fresh one per test), so several agents can live in one process.
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';
import type { ErrorKind } from '../api/errors.ts';

export interface AgentMetrics {
  /** Blob bytes served to peers (ReadBlob). */
  readonly bytesSent: Counter<'peer'>;
  /** Blob bytes received from a source and written to containerd (Import). */
  readonly bytesReceived: Counter<'source'>;
  /** Bytes of planned blobs that were already present here and not moved. */
  readonly bytesSkipped: Counter;
  /** Bytes kept from an interrupted ingest and not moved again. */
  readonly bytesResumed: Counter;
  readonly transferDuration: Histogram<'result'>;
  readonly activeTransfers: Gauge;
  readonly errors: Counter<'operation' | 'kind'>;
}

const errorKinds: ErrorKind[] = [
  'transient',
  'terminal',
  'conflict',
  'not-found',
  'already-exists',
  'unauthorized',
  'integrity',
];
const operations = ['import', 'read_blob', 'describe_plan', 'push', 'remove', 'pin', 'list', 'sweep'];

export function createAgentMetrics(registry: Registry): AgentMetrics {
  const registers = [registry];
  const metrics: AgentMetrics = {
    bytesSent: new Counter({
      name: 'tote_agent_bytes_sent_total',
      help: 'Blob bytes served to peer agents.',
      labelNames: ['peer'],
      registers,
    }),
    bytesReceived: new Counter({
      name: 'tote_agent_bytes_received_total',
      help: 'Blob bytes received from source agents and written to containerd.',
      labelNames: ['source'],
      registers,
    }),
    bytesSkipped: new Counter({
      name: 'tote_agent_bytes_skipped_total',
      help: 'Bytes of planned blobs already present on this node, not transferred.',
      registers,
    }),
    bytesResumed: new Counter({
      name: 'tote_agent_bytes_resumed_total',
      help: 'Bytes kept from interrupted ingests and not transferred again.',
      registers,
    }),
    transferDuration: new Histogram({
      name: 'tote_agent_transfer_duration_seconds',
      help: 'Duration of Import calls by result.',
      labelNames: ['result'],
      buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
      registers,
    }),
    activeTransfers: new Gauge({
      name: 'tote_agent_active_transfers',
      help: 'Imports in progress on this node.',
      registers,
    }),
    errors: new Counter({
      name: 'tote_agent_errors_total',
      help: 'Failed agent operations by operation and error kind.',
      labelNames: ['operation', 'kind'],
      registers,
    }),
  };
  // Pre-set to 0 so dashboards and alerts see every series from the start.
  for (const operation of operations) for (const kind of errorKinds) metrics.errors.inc({ operation, kind }, 0);
  for (const result of ['success', 'error']) metrics.transferDuration.zero({ result });
  return metrics;
}
