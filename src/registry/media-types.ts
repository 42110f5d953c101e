// OCI and Docker media types and the descriptor graph of an image (index → manifests → config + layers).
import { ToteError } from '../api/errors.ts';

export const MediaTypes = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerForeignLayer: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

/** The Accept header for manifests: both index kinds and both manifest kinds. */
export const manifestAccept = [
  MediaTypes.ociIndex,
  MediaTypes.ociManifest,
  MediaTypes.dockerManifestList,
  MediaTypes.dockerManifest,
].join(', ');

const indexTypes: ReadonlySet<string> = new Set([MediaTypes.ociIndex, MediaTypes.dockerManifestList]);
const manifestTypes: ReadonlySet<string> = new Set([MediaTypes.ociManifest, MediaTypes.dockerManifest]);

/** An OCI content descriptor. */
export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  /** Where non-distributable (foreign) layers live; such layers are not pushed. */
  readonly urls?: readonly string[];
  readonly platform?: { readonly os?: string; readonly architecture?: string; readonly variant?: string };
  readonly annotations?: Readonly<Record<string, string>>;
}

export const isIndexMediaType = (mediaType: string): boolean => indexTypes.has(mediaType);
export const isManifestMediaType = (mediaType: string): boolean => manifestTypes.has(mediaType);

/** A manifest or index decoded just enough to walk the graph. */
export type ParsedManifest =
  | { readonly kind: 'index'; readonly mediaType: string; readonly manifests: readonly Descriptor[] }
  | { readonly kind: 'manifest'; readonly mediaType: string; readonly blobs: readonly Descriptor[] };

/**
 * Decodes manifest bytes. The media type is the document's own `mediaType` field, else the descriptor's; documents
 * without either are recognised by shape (`manifests` → index, `layers` → manifest).
 * @throws ToteError terminal `InvalidManifest`.
 */
export function parseManifest(bytes: Uint8Array, digest: string, descriptorMediaType?: string): ParsedManifest {
  const fail = (why: string) => new ToteError('terminal', 'InvalidManifest', `manifest ${digest}: ${why}`);
  let doc: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(bytes).toString('utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw fail('not a JSON object');
    doc = parsed as Record<string, unknown>;
  } catch (err) {
    if (err instanceof ToteError) throw err;
    throw fail('not JSON');
  }
  const own = typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
  let mediaType = own ?? descriptorMediaType;
  if (mediaType === undefined || (!isIndexMediaType(mediaType) && !isManifestMediaType(mediaType))) {
    if (Array.isArray(doc.manifests)) mediaType = MediaTypes.ociIndex;
    else if (Array.isArray(doc.layers)) mediaType = MediaTypes.ociManifest;
    else throw fail(`unsupported media type ${JSON.stringify(mediaType ?? '')}`);
  }
  const descriptor = (value: unknown, where: string): Descriptor => {
    const d = value as Partial<Descriptor> | null;
    if (typeof d !== 'object' || d === null || typeof d.digest !== 'string' || typeof d.size !== 'number') {
      throw fail(`${where} is not a descriptor with digest and size`);
    }
    return { ...d, mediaType: typeof d.mediaType === 'string' ? d.mediaType : '' } as Descriptor;
  };
  if (isIndexMediaType(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw fail('index has no manifests array');
    return { kind: 'index', mediaType, manifests: doc.manifests.map((m, i) => descriptor(m, `manifests[${i}]`)) };
  }
  if (doc.config === undefined) throw fail('manifest has no config');
  const layers = Array.isArray(doc.layers) ? doc.layers : [];
  return {
    kind: 'manifest',
    mediaType,
    blobs: [descriptor(doc.config, 'config'), ...layers.map((l, i) => descriptor(l, `layers[${i}]`))],
  };
}

/** Layers that registries must not receive: foreign / non-distributable layers that name external URLs. */
export const isForeignLayer = (d: Descriptor): boolean =>
  (d.urls?.length ?? 0) > 0 &&
  (d.mediaType === MediaTypes.dockerForeignLayer || d.mediaType.includes('nondistributable'));
