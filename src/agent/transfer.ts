// The target side of a node-to-node transfer: Import pulls one image from a source agent into this node's containerd.
//
// Protocol (target-driven):
//  1. DescribePlan on the source (authorised by the transfer token): the size limit is checked before anything is
//     written.
//  2. The index and the platform manifest are read (locally when present, else fetched whole — they are small), their
//     digests verified, and the plan is recomputed HERE from the verified documents; the source's plan must agree.
//  3. Config and layers already in the content store are skipped (held by the transfer's lease). Missing ones are
//     fetched `parallelism` at a time, each streamed — its length bounded by the planned size, its sha256 checked
//     before commit — either
//     - into a staging file beside containerd's content store, then placed and adopted by containerd (when the store
//       is mounted; content-dir.ts): resumes at the staging file's length; or
//     - into a containerd ingest in ≤ 1 MiB writes: resumes at the ingest's offset (containerd checks the digest again
//       at commit, which also covers bytes written by an earlier, interrupted attempt).
//  4. Manifest and index are committed with their GC labels, then the image records are created as CRI's pull does;
//     only then is the lease released.
// Failure handling: a transient failure (peer gone, stream cut) keeps ingests, staging files and lease so the next
// Import resumes; a refusal (integrity, unauthorized, terminal) aborts every ingest and staging file of the transfer
// and deletes the lease synchronously, so containerd's GC removes whatever this transfer committed and nothing
// partial stays.
//
// Concurrency: one Import (an ImportRun) per image digest at a time (the server enforces it); inside, up to
// `parallelism` blob fetches run concurrently, sharing the run's progress, one bandwidth pacer and one AbortController
// that stops all of them at the first failure.
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { isToteError, ToteError } from '../api/errors.ts';
import type { Containerd, ContentWriter } from '../containerd/index.ts';
import {
  criManagedLabel,
  criManagedValue,
  criPinnedLabel,
  criPinnedValue,
  gcRefConfigLabel,
  gcRefLayerLabel,
  gcRefManifestLabel,
  maxChunkBytes,
} from '../containerd/index.ts';
import { parseReference } from '../registry/reference.ts';
import { diskErrorCode } from './content-dir.ts';
import type { ContentDir } from './content-dir.ts';
import { awaitCriNames } from './cri-names.ts';
import { readLocalDocument } from './images.ts';
import { recordNameFor } from '../registry/index.ts';
import type { AgentMetrics } from './metrics.ts';
import { maxDocumentBytes, planImage } from './oci.ts';
import type { ImagePlan, OciDescriptor, PlannedBlob, Platform } from './oci.ts';

/** What the target needs from the source agent (a subset of agentapi's AgentClient). */
export interface BlobPeer {
  describePlan(
    args: { digest: string; platform?: Platform; token?: string },
    options?: { signal?: AbortSignal; timeoutMs?: number },
  ): Promise<{
    digest: string;
    mediaType: string;
    totalSize: number;
    blobs: { digest: string; size: number; mediaType: string }[];
  }>;
  readBlob(
    args: { token: string; digest: string; offset?: number },
    options?: { signal?: AbortSignal },
  ): AsyncIterable<Uint8Array>;
}

export type ImportPhase = 'planning' | 'transferring' | 'recording' | 'completed';

export interface ImportProgress {
  phase: ImportPhase;
  bytesTotal: number;
  bytesTransferred: number;
  bytesSkipped: number;
  bytesResumed: number;
  blobsTotal: number;
  blobsPresent: number;
  blobsTransferred: number;
  imageNames: string[];
  configDigest: string;
}

export interface ImportSpec {
  readonly digest: string;
  readonly token: string;
  readonly sourceNode: string;
  /** Record names requested (tags); normalised here. */
  readonly names: readonly string[];
  readonly platform: Platform;
  readonly maxBytes: number;
  readonly parallelism: number;
  /** 0: unlimited. */
  readonly bandwidthBytesPerSecond: number;
  readonly pin: boolean;
}

export interface ImportDeps {
  readonly containerd: Containerd;
  readonly source: BlobPeer;
  readonly metrics: AgentMetrics;
  /** How long the transfer's lease keeps partial work if the agent dies (containerd.io/gc.expire). */
  readonly leaseTtlMs: number;
  readonly now?: () => Date;
  /** containerd's content store on disk, when mounted: blobs are staged and placed there instead of sent through the API. */
  readonly contentDir?: ContentDir | undefined;
}

/** Ingest refs are per digest and tote-specific, so a resumed Import finds its own partial write (see notes). */
export const ingestRef = (digest: string): string => `tote-import-${digest}`;
/** 12 + 64 = 76 characters: containerd's limit for lease ids. Per digest, so a retry reuses the same lease. */
export const importLeaseId = (digest: string): string => `tote-import-${digest.replace(/^sha256:/, '')}`;

const progressIntervalMs = 250;

/** Runs one Import to the end: the image on this node with its records, or an error (see the notes at the top). */
export function runImport(
  deps: ImportDeps,
  spec: ImportSpec,
  onProgress: (p: ImportProgress) => void,
  signal: AbortSignal,
): Promise<ImportProgress> {
  return new ImportRun(deps, spec, onProgress, signal).run();
}

/** The source's plan as announced, before the documents are read and checked against it. */
interface AnnouncedPlan {
  readonly root: OciDescriptor;
  readonly blobs: readonly { digest: string; size: number }[];
}

/**
 * One Import, step by step: #plan (the source's plan), #documents (index and manifest, verified, the plan recomputed
 * from them), #fetch (the missing config and layers), #write (manifest and index with their GC labels), #record (the
 * image records). Its state is shared by the steps as fields: the progress reported, the lease holding its work, and
 * the ingests and staging files it opened, which a refusal aborts.
 */
class ImportRun {
  readonly #deps: ImportDeps;
  readonly #spec: ImportSpec;
  readonly #names: string[];
  readonly #onProgress: (p: ImportProgress) => void;
  readonly #signal: AbortSignal;
  readonly #now: () => Date;
  readonly #lease: string;
  /** Ingests this transfer opened and staging files it wrote: what a refusal aborts. */
  readonly #refs = new Set<string>();
  readonly #staged = new Set<string>();
  /** Documents fetched from the source (committed in #write) and documents already here (held by the lease). */
  readonly #fetchedDocs = new Map<string, Buffer>();
  readonly #presentDocs = new Set<string>();
  readonly #progress: ImportProgress = {
    phase: 'planning',
    bytesTotal: 0,
    bytesTransferred: 0,
    bytesSkipped: 0,
    bytesResumed: 0,
    blobsTotal: 0,
    blobsPresent: 0,
    blobsTransferred: 0,
    imageNames: [],
    configDigest: '',
  };
  #lastReport = 0;

  constructor(deps: ImportDeps, spec: ImportSpec, onProgress: (p: ImportProgress) => void, signal: AbortSignal) {
    this.#deps = deps;
    this.#spec = spec;
    this.#names = normaliseNames(spec.names, spec.digest);
    this.#onProgress = onProgress;
    this.#signal = signal;
    this.#now = deps.now ?? (() => new Date());
    this.#lease = importLeaseId(spec.digest);
  }

  async run(): Promise<ImportProgress> {
    const { containerd } = this.#deps;
    this.#report(true);
    const announced = await this.#plan();
    try {
      await containerd.leases.create(this.#lease, new Date(this.#now().getTime() + this.#deps.leaseTtlMs), {
        'tote.dev/import': this.#spec.digest,
      });
    } catch (err) {
      if (!isToteError(err, 'already-exists')) throw err; // a retry: reuse the lease that holds the earlier work
    }
    try {
      const result = await this.#transfer(announced);
      await containerd.leases.delete(this.#lease);
      return result;
    } catch (err) {
      if (keepsPartialWork(err)) throw err;
      // A refusal: leave nothing behind. Abort this transfer's ingests and staging files, then drop the lease and let
      // GC collect.
      for (const ref of this.#refs) await containerd.content.abortIngest(ref).catch(() => undefined);
      for (const path of this.#staged) await this.#deps.contentDir?.discard(path).catch(() => undefined);
      await containerd.leases.delete(this.#lease, { sync: true }).catch(() => undefined);
      throw err;
    }
  }

  async #transfer(announced: AnnouncedPlan): Promise<ImportProgress> {
    const plan = await this.#documents(announced);
    this.#progress.phase = 'transferring';
    this.#report(true);
    await this.#fetch(await this.#missing(plan));
    this.#progress.phase = 'recording';
    this.#report(true);
    await this.#write(plan);
    this.#progress.imageNames = await this.#record(plan);
    // Done only when the kubelet's own lookup finds the image under every name (a containerd without CRI has none).
    await awaitCriNames(this.#deps.containerd, this.#progress.imageNames, plan.config.digest, { signal: this.#signal });
    this.#progress.phase = 'completed';
    return { ...this.#progress, imageNames: [...this.#progress.imageNames] };
  }

  #report(force: boolean): void {
    const t = Date.now();
    if (!force && t - this.#lastReport < progressIntervalMs) return;
    this.#lastReport = t;
    this.#onProgress({ ...this.#progress, imageNames: [...this.#progress.imageNames] });
  }

  /** 1. The source's plan, refused early when too large. */
  async #plan(): Promise<AnnouncedPlan> {
    const spec = this.#spec;
    const announced = await this.#deps.source.describePlan(
      { digest: spec.digest, platform: spec.platform, token: spec.token },
      { signal: this.#signal },
    );
    if (announced.digest !== spec.digest) {
      throw new ToteError('integrity', 'PlanMismatch', `source planned ${announced.digest}, not ${spec.digest}`);
    }
    if (announced.totalSize > spec.maxBytes) {
      throw new ToteError(
        'terminal',
        'PlanTooLarge',
        `image ${spec.digest} needs ${announced.totalSize} bytes, over the limit of ${spec.maxBytes}`,
      );
    }
    const rootSize = announced.blobs.find((b) => b.digest === spec.digest)?.size;
    if (rootSize === undefined)
      throw new ToteError('integrity', 'PlanMismatch', `source plan for ${spec.digest} omits the image itself`);
    return { root: { digest: spec.digest, mediaType: announced.mediaType, size: rootSize }, blobs: announced.blobs };
  }

  /** 2. Documents, verified, and the plan recomputed from them; the source's plan must agree. */
  async #documents(announced: AnnouncedPlan): Promise<ImagePlan> {
    const spec = this.#spec;
    const plan = await planImage(announced.root, spec.platform, (d) => this.#readDocument(d));
    const announcedSet = new Set(announced.blobs.map((b) => `${b.digest}/${b.size}`));
    const verifiedSet = new Set(plan.blobs.map((b) => `${b.digest}/${b.size}`));
    if (announcedSet.size !== verifiedSet.size || [...verifiedSet].some((k) => !announcedSet.has(k))) {
      throw new ToteError(
        'integrity',
        'PlanMismatch',
        `the source's plan for ${spec.digest} differs from its manifests`,
      );
    }
    if (plan.totalSize > spec.maxBytes) {
      throw new ToteError(
        'terminal',
        'PlanTooLarge',
        `image ${spec.digest} needs ${plan.totalSize} bytes, over the limit of ${spec.maxBytes}`,
      );
    }
    const progress = this.#progress;
    progress.bytesTotal = plan.totalSize;
    progress.blobsTotal = plan.blobs.length;
    progress.configDigest = plan.config.digest;
    for (const d of this.#presentDocs) {
      progress.blobsPresent++;
      const size = plan.blobs.find((b) => b.digest === d)?.size ?? 0;
      progress.bytesSkipped += size;
      this.#deps.metrics.bytesSkipped.inc(size);
    }
    progress.blobsTransferred += this.#fetchedDocs.size;
    return plan;
  }

  /** An index or manifest: the local copy when it is intact (then held by the lease), else fetched whole. */
  async #readDocument(d: OciDescriptor): Promise<Uint8Array> {
    const { containerd, metrics } = this.#deps;
    if (d.size > maxDocumentBytes)
      throw new ToteError('integrity', 'DocumentTooLarge', `image document ${d.digest} is ${d.size} bytes`);
    const local = await containerd.content.info(d.digest, { signal: this.#signal });
    if (local !== undefined && local.size === d.size) {
      try {
        const bytes = await readLocalDocument(containerd, d, this.#signal);
        await containerd.leases.addResource(this.#lease, { type: 'content', id: d.digest });
        this.#presentDocs.add(d.digest);
        return bytes;
      } catch (err) {
        if (!isToteError(err, 'integrity')) throw err; // a corrupt local copy: fetch a good one instead
      }
    }
    const bytes = await fetchWhole(this.#deps.source, this.#spec.token, d, this.#signal);
    metrics.bytesReceived.inc({ source: this.#spec.sourceNode }, bytes.length);
    this.#progress.bytesTransferred += bytes.length;
    this.#fetchedDocs.set(d.digest, bytes);
    return bytes;
  }

  /** 3a. Config and layers: what is here is skipped (and held by the lease); the rest is returned. */
  async #missing(plan: ImagePlan): Promise<PlannedBlob[]> {
    const { containerd, metrics } = this.#deps;
    const missing: PlannedBlob[] = [];
    for (const b of plan.blobs.filter((x) => x.role === 'config' || x.role === 'layer')) {
      const info = await containerd.content.info(b.digest, { signal: this.#signal });
      if (info !== undefined && info.size === b.size) {
        await containerd.leases.addResource(this.#lease, { type: 'content', id: b.digest });
        this.#progress.blobsPresent++;
        this.#progress.bytesSkipped += b.size;
        metrics.bytesSkipped.inc(b.size);
      } else {
        missing.push(b);
      }
    }
    return missing;
  }

  /** 3b. Fetches `blobs`, `parallelism` at a time under one pacer; the first failure stops them all. */
  async #fetch(blobs: PlannedBlob[]): Promise<void> {
    const stop = new AbortController();
    const linked = AbortSignal.any([this.#signal, stop.signal]);
    const pacer = makePacer(this.#spec.bandwidthBytesPerSecond, linked);
    const queue = [...blobs];
    let failure: unknown;
    const worker = async () => {
      for (let b = queue.shift(); b !== undefined && failure === undefined; b = queue.shift()) {
        try {
          await this.#fetchBlob(b, linked, pacer);
        } catch (err) {
          failure ??= err;
          stop.abort();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(this.#spec.parallelism, blobs.length)) }, worker));
    if (failure !== undefined) {
      // The first failure names the cause; the others were only stopped by it.
      throw failure;
    }
  }

  /** One blob, into the content store directly when it is mounted and writable, else through an ingest. */
  async #fetchBlob(b: PlannedBlob, fetchSignal: AbortSignal, pacer: Pacer): Promise<void> {
    const { contentDir, metrics } = this.#deps;
    if (contentDir?.writable) {
      try {
        await this.#fetchBlobToFile(contentDir, b, fetchSignal, pacer);
        return;
      } catch (err) {
        const code = diskErrorCode(err);
        if (code === undefined) throw err;
        // The disk refused the direct path (read-only, SELinux, blobs/ on another mount, full): this blob and every
        // later one go through containerd's content API, which writes where containerd may.
        const staging = contentDir.stagingPath(b.digest, this.#spec.digest);
        await contentDir.discard(staging).catch(() => undefined);
        this.#staged.delete(staging);
        if (contentDir.writable) metrics.errors.inc({ operation: 'direct_write', kind: 'terminal' });
        contentDir.disableWrites(`${code} writing ${b.digest} under ${contentDir.root}: ${errorText(err)}`);
      }
    }
    const progress = this.#progress;
    const writer = await this.#openBlobWriter(b, fetchSignal);
    if (writer === undefined) {
      // Committed meanwhile (a kubelet pull, a concurrent import): present now.
      progress.blobsPresent++;
      progress.bytesSkipped += b.size;
      return;
    }
    const offset = writer.offset;
    if (offset > 0) {
      progress.bytesResumed += offset;
      metrics.bytesResumed.inc(offset);
    }
    // From 0 the whole blob is hashed here; after a resume containerd's commit check covers the bytes written before.
    const hash = offset === 0 ? createHash('sha256') : undefined;
    try {
      await this.#receive(b, offset, hash, fetchSignal, pacer, async (data) => {
        await writeChunked(writer, data);
      });
      await writer.commit();
      progress.blobsTransferred++;
      this.#report(true);
    } catch (err) {
      if (keepsPartialWork(err)) {
        // Keep what arrived: let containerd acknowledge the chunks in flight so the retry resumes after them.
        await writer.flush().catch(() => undefined);
      }
      writer.close();
      throw err;
    }
  }

  /** The direct path: stage the blob in a file, verify it, place it in containerd's store and let containerd adopt it. */
  async #fetchBlobToFile(dir: ContentDir, b: PlannedBlob, fetchSignal: AbortSignal, pacer: Pacer): Promise<void> {
    const path = dir.stagingPath(b.digest, this.#spec.digest);
    this.#staged.add(path);
    const { handle, length } = await dir.openStaging(path);
    try {
      let offset = length;
      if (offset > b.size) {
        await handle.truncate(0); // not this blob's bytes: start over
        offset = 0;
      }
      const hash = createHash('sha256');
      if (offset > 0) {
        // An earlier attempt staged this much; its bytes are hashed again, so the check below covers the whole blob.
        for await (const part of handle.createReadStream({ start: 0, end: offset - 1, autoClose: false }))
          hash.update(part as Buffer);
        this.#progress.bytesResumed += offset;
        this.#deps.metrics.bytesResumed.inc(offset);
      }
      // Appends batched to ~1 MiB: one write call per MiB, not per TLS record. One batch is written while the next
      // arrives (at most two in memory), so the socket keeps flowing during disk writes.
      let pending: Uint8Array[] = [];
      let pendingBytes = 0;
      let writing: Promise<unknown> = Promise.resolve();
      const flush = async () => {
        await writing;
        if (pendingBytes === 0) return;
        const batch = pending;
        pending = [];
        pendingBytes = 0;
        writing = handle.writev(batch);
      };
      try {
        await this.#receive(b, offset, hash, fetchSignal, pacer, (data) => {
          pending.push(data);
          pendingBytes += data.length;
          return pendingBytes >= maxChunkBytes ? flush() : undefined;
        });
        await flush();
        await writing;
      } catch (err) {
        // Keep what arrived intact so the retry resumes after it.
        if (keepsPartialWork(err)) {
          await flush().catch(() => undefined);
        }
        await writing.catch(() => undefined);
        throw err;
      }
      await handle.datasync(); // the bytes (and the length) on disk before the file gets its digest name
    } finally {
      await handle.close();
    }
    await dir.place(path, b.digest);
    this.#staged.delete(path);
    await this.#adopt(dir, b, fetchSignal);
    this.#progress.blobsTransferred++;
    this.#report(true);
  }

  /** The transfer's ingest of blob `b`; undefined when the blob is committed already (then held by the lease). */
  async #openBlobWriter(b: PlannedBlob, writerSignal: AbortSignal): Promise<ContentWriter | undefined> {
    const { containerd } = this.#deps;
    const ref = ingestRef(b.digest);
    this.#refs.add(ref);
    try {
      return await containerd.content.openWriter(ref, {
        total: b.size,
        expected: b.digest,
        lease: this.#lease,
        signal: writerSignal,
      });
    } catch (err) {
      if (!isToteError(err, 'already-exists')) throw err;
      await containerd.leases.addResource(this.#lease, { type: 'content', id: b.digest });
      return undefined;
    }
  }

  /**
   * Streams blob `b` from `from` into `sink`, holding the source to the plan: never more than the planned size,
   * exactly the planned size in the end and, when `hash` covers the blob from its first byte, the planned digest.
   * `sink` returns a promise only when it needs the stream to wait (backpressure).
   */
  async #receive(
    b: PlannedBlob,
    from: number,
    hash: Hash | undefined,
    fetchSignal: AbortSignal,
    pacer: Pacer,
    sink: (data: Uint8Array) => Promise<void> | undefined,
  ): Promise<void> {
    const spec = this.#spec;
    const received = this.#deps.metrics.bytesReceived.labels({ source: spec.sourceNode });
    let offset = from;
    for await (const data of this.#deps.source.readBlob(
      { token: spec.token, digest: b.digest, offset },
      { signal: fetchSignal },
    )) {
      if (offset + data.length > b.size) {
        throw new ToteError(
          'integrity',
          'BlobLongerThanAnnounced',
          `source sent more than the ${b.size} bytes of ${b.digest}`,
        );
      }
      hash?.update(data);
      const wait = sink(data);
      if (wait !== undefined) await wait;
      offset += data.length;
      this.#progress.bytesTransferred += data.length;
      received.inc(data.length);
      this.#report(false);
      if (pacer !== unpaced) await pacer(data.length);
    }
    if (offset !== b.size) {
      throw new ToteError(
        'integrity',
        'BlobShorterThanAnnounced',
        `source sent ${offset} of the ${b.size} bytes of ${b.digest}`,
      );
    }
    if (hash !== undefined && `sha256:${hash.digest('hex')}` !== b.digest) {
      throw new ToteError('integrity', 'BlobDigestMismatch', `bytes received for ${b.digest} hash to something else`);
    }
  }

  /**
   * Has containerd record a placed blob in this namespace under the transfer's lease. A store that shares content
   * finds the file and commits without data; otherwise the file is streamed through the API and direct writes stop.
   */
  async #adopt(dir: ContentDir, b: PlannedBlob, fetchSignal: AbortSignal): Promise<void> {
    const writer = await this.#openBlobWriter(b, fetchSignal);
    if (writer === undefined) return;
    try {
      if (writer.offset !== b.size) {
        // containerd does not see the file: not its content store (or content is isolated per namespace).
        if (dir.writable) this.#deps.metrics.errors.inc({ operation: 'direct_write', kind: 'terminal' });
        dir.disableWrites(`containerd did not adopt ${b.digest} placed in ${dir.root}: not its content store`);
        for await (const part of createReadStream(dir.blobPath(b.digest), { start: writer.offset }))
          await writeChunked(writer, part as Buffer);
      }
      await writer.commit();
    } finally {
      writer.close();
    }
  }

  /** 4a. Manifest and index with their GC labels, so containerd's GC keeps what they reference. */
  async #write(plan: ImagePlan): Promise<void> {
    const manifestLabels: Record<string, string> = { [gcRefConfigLabel]: plan.config.digest };
    plan.layers.forEach((l, i) => (manifestLabels[gcRefLayerLabel(i)] = l.digest));
    await this.#commitDocument(plan.manifest, manifestLabels);
    if (plan.index) {
      const indexLabels: Record<string, string> = {};
      plan.index.manifests.forEach((m, i) => (indexLabels[gcRefManifestLabel(i)] = m.digest));
      await this.#commitDocument(plan.index.descriptor, indexLabels);
    }
  }

  async #commitDocument(d: OciDescriptor, labels: Record<string, string>): Promise<void> {
    const { containerd } = this.#deps;
    const lease = this.#lease;
    const signal = this.#signal;
    const bytes = this.#fetchedDocs.get(d.digest);
    if (bytes !== undefined) {
      const ref = ingestRef(d.digest);
      this.#refs.add(ref);
      let writer: ContentWriter | undefined;
      try {
        writer = await containerd.content.openWriter(ref, { total: d.size, expected: d.digest, lease, signal });
        if (writer.offset !== 0) {
          // A stale partial document: documents are rewritten whole.
          writer.close();
          await containerd.content.abortIngest(ref);
          writer = await containerd.content.openWriter(ref, { total: d.size, expected: d.digest, lease, signal });
        }
        await writeChunked(writer, bytes);
        if ((await writer.commit(labels)) === 'committed') return;
      } catch (err) {
        writer?.close();
        if (!isToteError(err, 'already-exists')) throw err;
      }
      await containerd.leases.addResource(lease, { type: 'content', id: d.digest });
    }
    // Present already (or committed concurrently): commit labels are not applied then, so set them.
    await containerd.content.updateLabels(d.digest, labels, { signal });
  }

  /** 4b. The image records, as CRI's pull creates them: every name asked, repo@digest, and the config digest. */
  async #record(plan: ImagePlan): Promise<string[]> {
    const { containerd } = this.#deps;
    const signal = this.#signal;
    const names = this.#names;
    const target = { mediaType: plan.root.mediaType, digest: plan.root.digest, size: plan.root.size };
    const labels: Record<string, string> = { [criManagedLabel]: criManagedValue };
    if (this.#spec.pin) labels[criPinnedLabel] = criPinnedValue;
    const repos = [...new Set(names.map((n) => parseReference(n).name))];
    const all = [...new Set([...names, ...repos.map((r) => `${r}@${plan.root.digest}`), plan.config.digest])];
    for (const name of all) {
      const existing = await containerd.images.get(name, { signal });
      if (existing === undefined) {
        try {
          await containerd.images.create({ name, target, labels }, { signal });
          continue;
        } catch (err) {
          if (!isToteError(err, 'already-exists')) throw err;
        }
      }
      await containerd.images.update(
        { name, target, labels },
        ['target', ...Object.keys(labels).map((k) => `labels.${k}`)],
        { signal },
      );
    }
    return all;
  }
}

/** Writes `data` to a containerd ingest in pieces of at most maxChunkBytes (its message size). */
async function writeChunked(writer: ContentWriter, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length; off += maxChunkBytes)
    await writer.write(data.subarray(off, off + maxChunkBytes));
}

/**
 * Whether a failure leaves the transfer's partial work in place for the next Import to resume: anything but a refusal
 * (integrity, unauthorized, terminal, …) — a cut stream, a peer gone, and a cancellation (the controller went away),
 * which arrives as a plain AbortError from the pacer or the socket.
 */
function keepsPartialWork(err: unknown): boolean {
  return !isToteError(err) || err.kind === 'transient' || err.kind === 'conflict';
}

/**
 * The record names a CRI pull of each reference makes: `repo:tag` for a tag (the default tag when none is given),
 * `repo@digest` for a digest reference, with or without a tag (CRI drops the tag then, and so does the kubelet's
 * lookup). A name carrying a different digest is refused.
 */
function normaliseNames(names: readonly string[], digest: string): string[] {
  return names.map((n) => {
    const ref = parseReference(n);
    if (ref.digest !== undefined && ref.digest !== digest) {
      throw new ToteError('terminal', 'NameDigestMismatch', `name ${n} names digest ${ref.digest}, not ${digest}`);
    }
    return recordNameFor(n);
  });
}

/** Fetches a whole (small) document from the source, checking size and digest. */
async function fetchWhole(source: BlobPeer, token: string, d: OciDescriptor, signal: AbortSignal): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const data of source.readBlob({ token, digest: d.digest, offset: 0 }, { signal })) {
    size += data.length;
    if (size > d.size)
      throw new ToteError(
        'integrity',
        'BlobLongerThanAnnounced',
        `source sent more than the ${d.size} bytes of ${d.digest}`,
      );
    parts.push(data);
  }
  const bytes = Buffer.concat(parts);
  if (bytes.length !== d.size)
    throw new ToteError(
      'integrity',
      'BlobShorterThanAnnounced',
      `source sent ${bytes.length} of the ${d.size} bytes of ${d.digest}`,
    );
  if (`sha256:${createHash('sha256').update(bytes).digest('hex')}` !== d.digest) {
    throw new ToteError('integrity', 'BlobDigestMismatch', `bytes received for ${d.digest} hash to something else`);
  }
  return bytes;
}

/**
 * A per-transfer bandwidth limit: after each chunk, waits until the bytes so far fit the rate. Shared by the
 * transfer's parallel fetches, so the limit is for the whole transfer.
 */
type Pacer = (bytes: number) => Promise<void>;
const unpaced: Pacer = async () => undefined;

function makePacer(bytesPerSecond: number, signal: AbortSignal): Pacer {
  if (bytesPerSecond <= 0) return unpaced;
  const started = Date.now();
  let total = 0;
  return async (bytes) => {
    total += bytes;
    const due = started + (total / bytesPerSecond) * 1000;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait, undefined, { signal });
  };
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));
