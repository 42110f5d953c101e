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
// Concurrency: one runImport call per image digest at a time (the server enforces it); inside, up to `parallelism`
// blob fetches run concurrently, sharing one progress object, one bandwidth pacer and one AbortController that stops
// all of them at the first failure.
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

export async function runImport(
  deps: ImportDeps,
  spec: ImportSpec,
  onProgress: (p: ImportProgress) => void,
  signal: AbortSignal,
): Promise<ImportProgress> {
  const { containerd, source, metrics } = deps;
  const now = deps.now ?? (() => new Date());
  const names = normaliseNames(spec.names, spec.digest);
  const progress: ImportProgress = {
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
  let lastReport = 0;
  const report = (force: boolean) => {
    const t = Date.now();
    if (!force && t - lastReport < progressIntervalMs) return;
    lastReport = t;
    onProgress({ ...progress, imageNames: [...progress.imageNames] });
  };
  report(true);

  // 1. The source's plan, refused early when too large.
  const announced = await source.describePlan(
    { digest: spec.digest, platform: spec.platform, token: spec.token },
    { signal },
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
  const root: OciDescriptor = { digest: spec.digest, mediaType: announced.mediaType, size: rootSize };

  const lease = importLeaseId(spec.digest);
  try {
    await containerd.leases.create(lease, new Date(now().getTime() + deps.leaseTtlMs), {
      'tote.dev/import': spec.digest,
    });
  } catch (err) {
    if (!isToteError(err, 'already-exists')) throw err; // a retry: reuse the lease that holds the earlier work
  }
  const refs = new Set<string>();
  const staged = new Set<string>();
  try {
    const result = await transfer();
    await containerd.leases.delete(lease);
    return result;
  } catch (err) {
    if (keepsPartialWork(err)) throw err;
    // A refusal: leave nothing behind. Abort this transfer's ingests and staging files, then drop the lease and let
    // GC collect.
    for (const ref of refs) await containerd.content.abortIngest(ref).catch(() => undefined);
    for (const path of staged) await deps.contentDir?.discard(path).catch(() => undefined);
    await containerd.leases.delete(lease, { sync: true }).catch(() => undefined);
    throw err;
  }

  async function transfer(): Promise<ImportProgress> {
    // 2. Documents, verified, and the plan recomputed from them.
    const fetchedDocs = new Map<string, Buffer>();
    const presentDocs = new Set<string>();
    const readDoc = async (d: OciDescriptor): Promise<Uint8Array> => {
      if (d.size > maxDocumentBytes)
        throw new ToteError('integrity', 'DocumentTooLarge', `image document ${d.digest} is ${d.size} bytes`);
      const local = await containerd.content.info(d.digest, { signal });
      if (local !== undefined && local.size === d.size) {
        try {
          const bytes = await readLocalDocument(containerd, d, signal);
          await containerd.leases.addResource(lease, { type: 'content', id: d.digest });
          presentDocs.add(d.digest);
          return bytes;
        } catch (err) {
          if (!isToteError(err, 'integrity')) throw err; // a corrupt local copy: fetch a good one instead
        }
      }
      const bytes = await fetchWhole(source, spec.token, d, signal);
      metrics.bytesReceived.inc({ source: spec.sourceNode }, bytes.length);
      progress.bytesTransferred += bytes.length;
      fetchedDocs.set(d.digest, bytes);
      return bytes;
    };
    const plan = await planImage(root, spec.platform, readDoc);
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
    progress.bytesTotal = plan.totalSize;
    progress.blobsTotal = plan.blobs.length;
    progress.configDigest = plan.config.digest;
    for (const d of presentDocs) {
      progress.blobsPresent++;
      const size = plan.blobs.find((b) => b.digest === d)?.size ?? 0;
      progress.bytesSkipped += size;
      metrics.bytesSkipped.inc(size);
    }
    progress.blobsTransferred += fetchedDocs.size;

    // 3. Config and layers: skip what is here, fetch the rest.
    progress.phase = 'transferring';
    report(true);
    const missing: PlannedBlob[] = [];
    for (const b of plan.blobs.filter((x) => x.role === 'config' || x.role === 'layer')) {
      const info = await containerd.content.info(b.digest, { signal });
      if (info !== undefined && info.size === b.size) {
        await containerd.leases.addResource(lease, { type: 'content', id: b.digest });
        progress.blobsPresent++;
        progress.bytesSkipped += b.size;
        metrics.bytesSkipped.inc(b.size);
      } else {
        missing.push(b);
      }
    }
    await fetchAll(missing);

    // 4. Manifest and index with their GC labels, then the records.
    progress.phase = 'recording';
    report(true);
    const manifestLabels: Record<string, string> = { [gcRefConfigLabel]: plan.config.digest };
    plan.layers.forEach((l, i) => (manifestLabels[gcRefLayerLabel(i)] = l.digest));
    await commitDocument(plan.manifest, manifestLabels);
    if (plan.index) {
      const indexLabels: Record<string, string> = {};
      plan.index.manifests.forEach((m, i) => (indexLabels[gcRefManifestLabel(i)] = m.digest));
      await commitDocument(plan.index.descriptor, indexLabels);
    }
    progress.imageNames = await createRecords(plan);
    // Done only when the kubelet's own lookup finds the image under every name (a containerd without CRI has none).
    await awaitCriNames(containerd, progress.imageNames, plan.config.digest, { signal });
    progress.phase = 'completed';
    return { ...progress, imageNames: [...progress.imageNames] };

    async function commitDocument(d: OciDescriptor, labels: Record<string, string>): Promise<void> {
      const bytes = fetchedDocs.get(d.digest);
      if (bytes !== undefined) {
        const ref = ingestRef(d.digest);
        refs.add(ref);
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
  }

  async function fetchAll(blobs: PlannedBlob[]): Promise<void> {
    const stop = new AbortController();
    const linked = AbortSignal.any([signal, stop.signal]);
    const pacer = makePacer(spec.bandwidthBytesPerSecond, linked);
    const queue = [...blobs];
    let failure: unknown;
    const worker = async () => {
      for (let b = queue.shift(); b !== undefined && failure === undefined; b = queue.shift()) {
        try {
          await fetchBlob(b, linked, pacer);
        } catch (err) {
          failure ??= err;
          stop.abort();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(spec.parallelism, blobs.length)) }, worker));
    if (failure !== undefined) {
      // The first failure names the cause; the others were only stopped by it.
      throw failure;
    }
  }

  async function fetchBlob(
    b: PlannedBlob,
    fetchSignal: AbortSignal,
    pacer: (n: number) => Promise<void>,
  ): Promise<void> {
    if (deps.contentDir?.writable) {
      await fetchBlobToFile(deps.contentDir, b, fetchSignal, pacer);
      return;
    }
    const writer = await openBlobWriter(b, fetchSignal);
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
      await receive(b, offset, hash, fetchSignal, pacer, async (data) => {
        await writeChunked(writer, data);
      });
      await writer.commit();
      progress.blobsTransferred++;
      report(true);
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
  async function fetchBlobToFile(
    dir: ContentDir,
    b: PlannedBlob,
    fetchSignal: AbortSignal,
    pacer: (n: number) => Promise<void>,
  ): Promise<void> {
    const path = dir.stagingPath(b.digest, spec.digest);
    staged.add(path);
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
        progress.bytesResumed += offset;
        metrics.bytesResumed.inc(offset);
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
        await receive(b, offset, hash, fetchSignal, pacer, (data) => {
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
    staged.delete(path);
    await adopt(dir, b, fetchSignal);
    progress.blobsTransferred++;
    report(true);
  }

  /** The transfer's ingest of blob `b`; undefined when the blob is committed already (then held by the lease). */
  async function openBlobWriter(b: PlannedBlob, writerSignal: AbortSignal): Promise<ContentWriter | undefined> {
    const ref = ingestRef(b.digest);
    refs.add(ref);
    try {
      return await containerd.content.openWriter(ref, {
        total: b.size,
        expected: b.digest,
        lease,
        signal: writerSignal,
      });
    } catch (err) {
      if (!isToteError(err, 'already-exists')) throw err;
      await containerd.leases.addResource(lease, { type: 'content', id: b.digest });
      return undefined;
    }
  }

  /**
   * Streams blob `b` from `offset` into `sink`, holding the source to the plan: never more than the planned size,
   * exactly the planned size in the end and, when `hash` covers the blob from its first byte, the planned digest.
   * `sink` returns a promise only when it needs the stream to wait (backpressure).
   */
  async function receive(
    b: PlannedBlob,
    from: number,
    hash: Hash | undefined,
    fetchSignal: AbortSignal,
    pacer: (n: number) => Promise<void>,
    sink: (data: Uint8Array) => Promise<void> | undefined,
  ): Promise<void> {
    const received = metrics.bytesReceived.labels({ source: spec.sourceNode });
    let offset = from;
    for await (const data of source.readBlob(
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
      progress.bytesTransferred += data.length;
      received.inc(data.length);
      report(false);
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
  async function adopt(dir: ContentDir, b: PlannedBlob, fetchSignal: AbortSignal): Promise<void> {
    const writer = await openBlobWriter(b, fetchSignal);
    if (writer === undefined) return;
    try {
      if (writer.offset !== b.size) {
        // containerd does not see the file: not its content store (or content is isolated per namespace).
        dir.disableWrites();
        metrics.errors.inc({ operation: 'direct_write', kind: 'terminal' });
        for await (const part of createReadStream(dir.blobPath(b.digest), { start: writer.offset }))
          await writeChunked(writer, part as Buffer);
      }
      await writer.commit();
    } finally {
      writer.close();
    }
  }

  async function createRecords(plan: ImagePlan): Promise<string[]> {
    const target = { mediaType: plan.root.mediaType, digest: plan.root.digest, size: plan.root.size };
    const labels: Record<string, string> = { [criManagedLabel]: criManagedValue };
    if (spec.pin) labels[criPinnedLabel] = criPinnedValue;
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
const unpaced = async (): Promise<void> => undefined;

function makePacer(bytesPerSecond: number, signal: AbortSignal): (bytes: number) => Promise<void> {
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
