// OCI / Docker image documents as the agent needs them: parse an index or manifest, pick the manifest a node of a given
// platform runs (as containerd's CRI does), and walk an image into its transfer plan. Pure: blob bytes come from a
// reader the caller supplies (the local content store on a source, a verified peer fetch on a target).
import { ToteError } from '../api/errors.ts';

export const mediaTypes = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
} as const;

export const isIndexType = (t: string): boolean => t === mediaTypes.ociIndex || t === mediaTypes.dockerList;
export const isManifestType = (t: string): boolean => t === mediaTypes.ociManifest || t === mediaTypes.dockerManifest;

/** Indexes and manifests are small; anything larger is refused rather than buffered. */
export const maxDocumentBytes = 4 * 1024 * 1024;

export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

export interface OciDescriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly platform?: Platform;
  readonly annotations?: Readonly<Record<string, string>>;
}

export type BlobRole = 'index' | 'manifest' | 'config' | 'layer';

export interface PlannedBlob {
  readonly digest: string;
  readonly size: number;
  readonly mediaType: string;
  readonly role: BlobRole;
}

/** What a node of `platform` needs of an image: index (if any), its manifest, config and layers. */
export interface ImagePlan {
  readonly root: OciDescriptor;
  readonly platform: Platform;
  readonly index?: { readonly descriptor: OciDescriptor; readonly manifests: readonly OciDescriptor[] };
  readonly manifest: OciDescriptor;
  readonly config: OciDescriptor;
  readonly layers: readonly OciDescriptor[];
  /** In writing order for a reader: index, manifest, config, layers. */
  readonly blobs: readonly PlannedBlob[];
  readonly totalSize: number;
}

const malformed = (digest: string, why: string) =>
  new ToteError('integrity', 'MalformedImageDocument', `image document ${digest}: ${why}`);

function parseDescriptor(value: unknown, where: string): OciDescriptor {
  const d = value as Partial<OciDescriptor> | null;
  if (!d || typeof d.digest !== 'string' || typeof d.size !== 'number' || typeof d.mediaType !== 'string') {
    throw malformed(where, 'descriptor lacks mediaType, digest or size');
  }
  if (!/^sha256:[a-f0-9]{64}$/.test(d.digest) || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw malformed(where, `bad descriptor ${JSON.stringify(d.digest)} (${String(d.size)} bytes)`);
  }
  return {
    mediaType: d.mediaType,
    digest: d.digest,
    size: d.size,
    ...(d.platform ? { platform: d.platform } : {}),
    ...(d.annotations ? { annotations: d.annotations } : {}),
  };
}

function parseJson(bytes: Uint8Array, descriptor: OciDescriptor): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw malformed(descriptor.digest, 'not JSON');
  }
  if (typeof doc !== 'object' || doc === null) throw malformed(descriptor.digest, 'not a JSON object');
  // containerd refuses a document whose own mediaType contradicts its descriptor's.
  const own = (doc as { mediaType?: unknown }).mediaType;
  if (typeof own === 'string' && own !== descriptor.mediaType) {
    throw malformed(descriptor.digest, `mediaType ${own} but the descriptor says ${descriptor.mediaType}`);
  }
  return doc as Record<string, unknown>;
}

export function parseIndex(bytes: Uint8Array, descriptor: OciDescriptor): OciDescriptor[] {
  const doc = parseJson(bytes, descriptor);
  if (!Array.isArray(doc.manifests)) throw malformed(descriptor.digest, 'index without manifests');
  return doc.manifests.map((m, i) => parseDescriptor(m, `${descriptor.digest} manifests[${i}]`));
}

export function parseManifest(
  bytes: Uint8Array,
  descriptor: OciDescriptor,
): { config: OciDescriptor; layers: OciDescriptor[] } {
  const doc = parseJson(bytes, descriptor);
  if (!Array.isArray(doc.layers)) throw malformed(descriptor.digest, 'manifest without layers');
  return {
    config: parseDescriptor(doc.config, `${descriptor.digest} config`),
    layers: doc.layers.map((l, i) => parseDescriptor(l, `${descriptor.digest} layers[${i}]`)),
  };
}

/** Normalises architecture names the way containerd's platforms package does. */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  let architecture = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() ?? '';
  if (architecture === 'x86_64' || architecture === 'x86-64') architecture = 'amd64';
  else if (architecture === 'i386') architecture = '386';
  else if (architecture === 'aarch64' || architecture === 'arm64') {
    architecture = 'arm64';
    if (variant === '8' || variant === 'v8') variant = '';
  } else if (architecture === 'armhf') {
    architecture = 'arm';
    variant = 'v7';
  } else if (architecture === 'armel') {
    architecture = 'arm';
    variant = 'v6';
  } else if (architecture === 'arm') {
    if (variant === '' || variant === '7') variant = 'v7';
    else if (/^[5-8]$/.test(variant)) variant = `v${variant}`;
  } else if (architecture === 'amd64' && variant === 'v1') variant = '';
  return variant === '' ? { os, architecture } : { os, architecture, variant };
}

/** The platform this process runs on, as an image index names it. */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = {
    x64: 'amd64',
    ia32: '386',
    arm64: 'arm64',
    arm: 'arm',
    ppc64: 'ppc64le',
    s390x: 's390x',
    riscv64: 'riscv64',
  };
  return normalizePlatform({ os: process.platform, architecture: arch[process.arch] ?? process.arch });
}

/**
 * How well `candidate` serves a node of `want`, lower is better; undefined when it cannot run there. Mirrors CRI's
 * matcher closely enough for real indexes: the exact platform first, then the architecture's compatible variants
 * (amd64 variants, older arm variants), then 386 on amd64 and arm on arm64.
 */
export function platformRank(want: Platform, candidate: Platform): number | undefined {
  const w = normalizePlatform(want);
  const c = normalizePlatform(candidate);
  if (w.os !== c.os) return undefined;
  if (w.architecture === c.architecture) {
    if ((w.variant ?? '') === (c.variant ?? '')) return 0;
    if (w.architecture === 'arm') {
      const wv = Number((w.variant ?? 'v7').slice(1));
      const cv = Number((c.variant ?? 'v7').slice(1));
      return cv < wv ? 1 + (wv - cv) : undefined;
    }
    if (w.architecture === 'amd64') return c.variant === undefined ? 1 : 2;
    return 1;
  }
  if (w.architecture === 'amd64' && c.architecture === '386') return 10;
  if (w.architecture === 'arm64' && c.architecture === 'arm') return 10 + (8 - Number((c.variant ?? 'v7').slice(1)));
  return undefined;
}

/** Attestation and other non-runnable entries of an index (buildkit's `unknown/unknown`). */
const isAttestation = (d: OciDescriptor) =>
  d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' ||
  (d.platform?.os === 'unknown' && d.platform?.architecture === 'unknown');

/** The index entry a node of `platform` runs, or undefined. */
export function selectManifest(manifests: readonly OciDescriptor[], platform: Platform): OciDescriptor | undefined {
  let best: { d: OciDescriptor; rank: number } | undefined;
  for (const d of manifests) {
    if (!isManifestType(d.mediaType) || isAttestation(d) || d.platform === undefined) continue;
    const rank = platformRank(platform, d.platform);
    if (rank !== undefined && (best === undefined || rank < best.rank)) best = { d, rank };
  }
  return best?.d;
}

/** Reads one small document (index or manifest) by descriptor; must return exactly the blob's bytes. */
export type DocumentReader = (descriptor: OciDescriptor) => Promise<Uint8Array>;

/**
 * Walks the image at `root` into the plan for `platform`, reading the index and manifest through `read`.
 * @throws ToteError `not-found` when the index has no manifest for the platform; `integrity` for malformed documents.
 */
export async function planImage(root: OciDescriptor, platform: Platform, read: DocumentReader): Promise<ImagePlan> {
  let index: ImagePlan['index'];
  let manifestDescriptor = root;
  if (isIndexType(root.mediaType)) {
    const manifests = parseIndex(await read(root), root);
    const chosen = selectManifest(manifests, platform);
    if (chosen === undefined) {
      throw new ToteError(
        'not-found',
        'NoManifestForPlatform',
        `image ${root.digest} has no manifest for ${platform.os}/${platform.architecture}${platform.variant ? `/${platform.variant}` : ''}`,
      );
    }
    index = { descriptor: root, manifests };
    manifestDescriptor = chosen;
  } else if (!isManifestType(root.mediaType)) {
    throw new ToteError('terminal', 'UnsupportedMediaType', `image ${root.digest} has media type ${root.mediaType}`);
  }
  const { config, layers } = parseManifest(await read(manifestDescriptor), manifestDescriptor);
  const blobs: PlannedBlob[] = [
    ...(index ? [{ ...pick(root), role: 'index' as const }] : []),
    { ...pick(manifestDescriptor), role: 'manifest' },
    { ...pick(config), role: 'config' },
    ...layers.map((l) => ({ ...pick(l), role: 'layer' as const })),
  ];
  // A layer listed twice is moved once.
  const unique = [...new Map(blobs.map((b) => [b.digest, b])).values()];
  return {
    root,
    platform,
    ...(index ? { index } : {}),
    manifest: manifestDescriptor,
    config,
    layers,
    blobs: unique,
    totalSize: unique.reduce((sum, b) => sum + b.size, 0),
  };
}

const pick = (d: OciDescriptor) => ({ digest: d.digest, size: d.size, mediaType: d.mediaType });
