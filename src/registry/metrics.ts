// Prometheus metrics of the registry client. Create one RegistryMetrics per process (prom-client refuses to register
// the same name twice in a Registry) and hand it to every RegistryClient.
import { Counter, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';

/** How a blob of a push ended. */
export type BlobOutcome = 'uploaded' | 'skipped' | 'mounted' | 'foreign';
const blobOutcomes: readonly BlobOutcome[] = ['uploaded', 'skipped', 'mounted', 'foreign'];
/** `success` or the ToteError kind of the failure. */
const results = ['success', 'transient', 'terminal', 'not-found', 'unauthorized', 'integrity'] as const;

/** Counters and histograms of pushes and resolves. All series are pre-set to 0 so that rates work from the start. */
export class RegistryMetrics {
  /** `tote_registry_push_blob_bytes_total{outcome}`: blob bytes uploaded, or skipped because the target had them. */
  readonly blobBytes: Counter<'outcome'>;
  /** `tote_registry_push_blobs_total{outcome}`: blobs by outcome. */
  readonly blobs: Counter<'outcome'>;
  /** `tote_registry_push_manifests_total{outcome}`: manifests and indexes uploaded or already present. */
  readonly manifests: Counter<'outcome'>;
  /** `tote_registry_pushes_total{result}`: whole image pushes. */
  readonly pushes: Counter<'result'>;
  /** `tote_registry_push_duration_seconds{result}`. */
  readonly pushDuration: Histogram<'result'>;
  /** `tote_registry_resolves_total{result}`: tag resolutions. */
  readonly resolves: Counter<'result'>;
  /** `tote_registry_resolve_duration_seconds{result}`. */
  readonly resolveDuration: Histogram<'result'>;
  /** `tote_registry_retries_total{operation}`: attempts repeated after a transient failure. */
  readonly retries: Counter<'operation'>;

  /** @param registry where to register; prom-client's global registry when omitted. */
  constructor(registry?: Registry) {
    const registers = registry !== undefined ? [registry] : undefined;
    const common = registers !== undefined ? { registers } : {};
    this.blobBytes = new Counter({
      name: 'tote_registry_push_blob_bytes_total',
      help: 'Blob bytes of backup pushes, by outcome (uploaded, skipped as already present, mounted, foreign).',
      labelNames: ['outcome'],
      ...common,
    });
    this.blobs = new Counter({
      name: 'tote_registry_push_blobs_total',
      help: 'Blobs of backup pushes, by outcome.',
      labelNames: ['outcome'],
      ...common,
    });
    this.manifests = new Counter({
      name: 'tote_registry_push_manifests_total',
      help: 'Manifests and indexes of backup pushes, by outcome (uploaded, skipped).',
      labelNames: ['outcome'],
      ...common,
    });
    this.pushes = new Counter({
      name: 'tote_registry_pushes_total',
      help: 'Image pushes to a registry, by result.',
      labelNames: ['result'],
      ...common,
    });
    this.pushDuration = new Histogram({
      name: 'tote_registry_push_duration_seconds',
      help: 'Duration of image pushes, by result.',
      labelNames: ['result'],
      buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600],
      ...common,
    });
    this.resolves = new Counter({
      name: 'tote_registry_resolves_total',
      help: 'Tag resolutions against a registry, by result.',
      labelNames: ['result'],
      ...common,
    });
    this.resolveDuration = new Histogram({
      name: 'tote_registry_resolve_duration_seconds',
      help: 'Duration of tag resolutions, by result.',
      labelNames: ['result'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      ...common,
    });
    this.retries = new Counter({
      name: 'tote_registry_retries_total',
      help: 'Registry operations repeated after a transient failure.',
      labelNames: ['operation'],
      ...common,
    });
    for (const outcome of blobOutcomes) {
      this.blobBytes.inc({ outcome }, 0);
      this.blobs.inc({ outcome }, 0);
    }
    for (const outcome of ['uploaded', 'skipped']) this.manifests.inc({ outcome }, 0);
    for (const result of results) {
      this.pushes.inc({ result }, 0);
      this.resolves.inc({ result }, 0);
    }
  }
}
