// The node's images as the agent reports them, read from containerd's k8s.io namespace: records grouped by target
// digest, with the plan for this node's platform and whether every blob of it is really in the content store (an
// image with a record but missing layers — discard_unpacked_layers, a lost blob — cannot be a transfer source).
import { createHash } from 'node:crypto';
import { ToteError } from '../api/errors.ts';
import type { Containerd, ImageRecord } from '../containerd/index.ts';
import { criManagedLabel, criManagedValue, criPinnedLabel, criPinnedValue } from '../containerd/index.ts';
import { parseReference } from '../registry/reference.ts';
import { pinnedUntil } from './pins.ts';
import { isIndexType, maxDocumentBytes, parseIndex, planImage } from './oci.ts';
import type { ImagePlan, OciDescriptor, Platform } from './oci.ts';

export interface NodeImage {
  readonly names: string[];
  readonly digest: string;
  readonly mediaType: string;
  readonly size: number;
  readonly platforms: Platform[];
  readonly complete: boolean;
  readonly missingDigests: string[];
  readonly configDigest: string;
  readonly managed: boolean;
  readonly pinned: boolean;
  /** Unix seconds until which tote's pin holds (pins.ts); 0 when tote has not pinned the image. */
  readonly pinnedUntil: number;
  /** Manifest and config present but layers missing: the signature of discard_unpacked_layers. */
  readonly layersDiscarded: boolean;
}

/**
 * Plans by (root digest, platform). Index, manifest and config are content-addressed, so the plan of a digest never
 * changes; what can change — whether each blob is still there — is checked anew on every listing. Errors are never
 * cached. Bounded, oldest first out.
 */
const planCache = new Map<string, { plan: ImagePlan; platforms: Platform[] }>();
const planCacheMax = 8192;
/** Images described at once while listing a node: enough to overlap containerd round trips on a 2-core node. */
const describeConcurrency = 8;

function rememberPlan(key: string, value: { plan: ImagePlan; platforms: Platform[] }): void {
  planCache.set(key, value);
  if (planCache.size > planCacheMax) {
    const oldest = planCache.keys().next().value;
    if (oldest !== undefined) planCache.delete(oldest);
  }
}

const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/**
 * Reads an index or manifest from the local content store, checking size and digest: a corrupt local document must
 * never be planned from or served.
 */
export async function readLocalDocument(
  containerd: Containerd,
  d: OciDescriptor,
  signal?: AbortSignal,
): Promise<Buffer> {
  if (d.size > maxDocumentBytes) {
    throw new ToteError('terminal', 'DocumentTooLarge', `image document ${d.digest} is ${d.size} bytes`);
  }
  const bytes = await containerd.content.readAll(d.digest, maxDocumentBytes, { signal });
  if (bytes.length !== d.size || sha256(bytes) !== d.digest) {
    throw new ToteError('integrity', 'LocalBlobCorrupt', `local content ${d.digest} does not match its digest`);
  }
  return bytes;
}

/** The plan for `platform` from this node's own content. @throws not-found when the index or manifest is missing. */
export function localPlan(
  containerd: Containerd,
  root: OciDescriptor,
  platform: Platform,
  signal?: AbortSignal,
): Promise<ImagePlan> {
  return planImage(root, platform, (d) => readLocalDocument(containerd, d, signal));
}

/**
 * The blobs of `plan` that are missing (or truncated) in the content store. `present` (digest → size from one
 * Content.List) answers without a call per blob when a whole node is being listed.
 */
export async function missingBlobs(
  containerd: Containerd,
  plan: ImagePlan,
  present?: ReadonlyMap<string, number>,
): Promise<string[]> {
  const missing: string[] = [];
  for (const b of plan.blobs) {
    const size = present ? present.get(b.digest) : (await containerd.content.info(b.digest))?.size;
    if (size !== b.size) missing.push(b.digest);
  }
  return missing;
}

/**
 * This node's plan of the image whose root is `digest`, and which of its blobs are missing: what a source describes to
 * a target. @throws ToteError not-found when no image record points at `digest`.
 */
export async function heldImagePlan(
  containerd: Containerd,
  nodeName: string,
  digest: string,
  platform: Platform,
): Promise<{ plan: ImagePlan; missing: ReadonlySet<string> }> {
  const [record] = await containerd.images.list([`target.digest==${digest}`]);
  if (record === undefined) throw new ToteError('not-found', 'ImageNotFound', `no image ${digest} on node ${nodeName}`);
  const plan = await localPlan(containerd, rootOf(record), platform);
  return { plan, missing: new Set(await missingBlobs(containerd, plan)) };
}

/** The descriptor an image record points at. */
export const rootOf = (r: ImageRecord): OciDescriptor => ({
  mediaType: r.target.mediaType,
  digest: r.target.digest,
  size: r.target.size,
});

/** Describes the image whose records are `records` (all with the same target) for a node of `platform`. */
export async function describeImage(
  containerd: Containerd,
  records: readonly ImageRecord[],
  platform: Platform,
  present?: ReadonlyMap<string, number>,
): Promise<NodeImage> {
  const first = records[0];
  if (first === undefined) throw new ToteError('not-found', 'ImageNotFound', 'no image records');
  const root = rootOf(first);
  const base = {
    names: records.map((r) => r.name).sort(),
    digest: root.digest,
    mediaType: root.mediaType,
    managed: records.some((r) => r.labels[criManagedLabel] === criManagedValue),
    pinned: records.some((r) => r.labels[criPinnedLabel] === criPinnedValue),
    pinnedUntil: pinnedUntil(records),
  };
  let platforms: Platform[] = [];
  let plan: ImagePlan;
  const cacheKey = `${root.digest}|${platform.os}/${platform.architecture}/${platform.variant ?? ''}`;
  const cached = planCache.get(cacheKey);
  try {
    if (cached) {
      ({ plan, platforms } = cached);
    } else {
      if (isIndexType(root.mediaType)) {
        platforms = parseIndex(await readLocalDocument(containerd, root), root).flatMap((m) =>
          m.platform ? [m.platform] : [],
        );
      }
      plan = await localPlan(containerd, root, platform);
    }
  } catch (err) {
    // terminal: a document over maxDocumentBytes or of an unknown media type. One such image must not fail the
    // listing of the whole node (ListImages, GetNodeInfo); it is reported as unusable like a corrupt one.
    if (!(err instanceof ToteError) || !['not-found', 'integrity', 'terminal'].includes(err.kind)) throw err;
    // The index or the manifest itself is missing or corrupt: nothing of this image can be trusted.
    const missing = err.kind === 'not-found' && err.reason === 'NoManifestForPlatform' ? [] : [root.digest];
    return {
      ...base,
      size: root.size,
      platforms,
      complete: false,
      missingDigests: missing,
      configDigest: '',
      layersDiscarded: false,
    };
  }
  if (platforms.length === 0 && !cached) {
    try {
      const config = JSON.parse(
        (await readLocalDocument(containerd, plan.config)).toString('utf8'),
      ) as Partial<Platform>;
      if (config.os && config.architecture)
        platforms = [
          { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) },
        ];
    } catch {
      // a missing config is reported through missingDigests
    }
  }
  if (!cached) rememberPlan(cacheKey, { plan, platforms });
  const missingDigests = await missingBlobs(containerd, plan, present);
  const layerDigests = new Set(plan.layers.map((l) => l.digest));
  const onlyLayersMissing = missingDigests.length > 0 && missingDigests.every((d) => layerDigests.has(d));
  return {
    ...base,
    size: plan.totalSize,
    platforms,
    complete: missingDigests.length === 0,
    missingDigests,
    configDigest: plan.config.digest,
    layersDiscarded: onlyLayersMissing && base.managed,
  };
}

/** Every image in the namespace (or those with the given target digests), grouped by target digest. */
export async function listNodeImages(
  containerd: Containerd,
  platform: Platform,
  digests: readonly string[] = [],
): Promise<NodeImage[]> {
  const records = await containerd.images.list(digests.map((d) => `target.digest==${d}`));
  const byDigest = new Map<string, ImageRecord[]>();
  for (const r of records) byDigest.set(r.target.digest, [...(byDigest.get(r.target.digest) ?? []), r]);
  // For a whole node one Content.List answers "is this blob here" for every image at once; for a few images an Info
  // per blob is cheaper than listing a large store.
  const present =
    byDigest.size > 4
      ? new Map((await containerd.content.list()).map((info) => [info.digest, info.size] as const))
      : undefined;
  const groups = [...byDigest.values()];
  const out: NodeImage[] = new Array<NodeImage>(groups.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < groups.length; i = next++) {
      out[i] = await describeImage(containerd, groups[i] ?? [], platform, present);
    }
  };
  await Promise.all(Array.from({ length: Math.min(describeConcurrency, groups.length) }, worker));
  return out.sort((a, b) => a.digest.localeCompare(b.digest));
}

/** The repository part of a normalised name (`docker.io/library/nginx:1.25` → `docker.io/library/nginx`). */
export const repositoryOf = (reference: string): string => parseReference(reference).name;

/**
 * Every blob digest a peer may read for the image `digest`: the root, every child manifest the node holds, and their
 * configs and layers. Used by ReadBlob so a token for one image cannot read another image's blobs.
 */
export async function imageClosure(containerd: Containerd, digest: string): Promise<Set<string>> {
  const records = await containerd.images.list([`target.digest==${digest}`]);
  const first = records[0];
  if (first === undefined) throw new ToteError('not-found', 'ImageNotFound', `no image ${digest} on this node`);
  const root = rootOf(first);
  const closure = new Set<string>([root.digest]);
  const manifests = isIndexType(root.mediaType) ? parseIndex(await readLocalDocument(containerd, root), root) : [root];
  for (const m of manifests) {
    closure.add(m.digest);
    let plan: ImagePlan;
    try {
      plan = await planImage(m, { os: '', architecture: '' }, (d) => readLocalDocument(containerd, d));
    } catch (err) {
      if (err instanceof ToteError && (err.kind === 'not-found' || err.kind === 'terminal')) continue; // other platforms' manifests are usually absent
      throw err;
    }
    for (const b of plan.blobs) closure.add(b.digest);
  }
  return closure;
}
