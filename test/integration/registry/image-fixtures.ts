// Builds test images in memory: deterministic tar.gz layers, config JSON, manifests and indexes in both OCI and Docker
// flavours, and an in-memory ImageSource over them.
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import type { Descriptor, ImageSource } from '../../../src/registry/index.ts';
import { MediaTypes } from '../../../src/registry/index.ts';

export interface Blob {
  readonly descriptor: Descriptor;
  readonly bytes: Uint8Array;
}

export interface TestImage {
  /** Descriptor of the manifest (or index). */
  readonly root: Descriptor;
  /** Manifest and index bytes by digest. */
  readonly manifests: Map<string, Uint8Array>;
  /** Config and layer bytes by digest. */
  readonly blobs: Map<string, Uint8Array>;
  /** Layer and config digests of every manifest, in manifest order. */
  readonly blobDigests: string[];
}

const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Deterministic pseudo-random bytes (xorshift32), so layers differ by seed but tests are reproducible. */
export function pseudoRandomBytes(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed | 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A one-file POSIX tar archive. */
function tar(name: string, content: Uint8Array): Uint8Array {
  const header = Buffer.alloc(512);
  const field = (value: string, offset: number, length: number) => header.write(value, offset, length, 'ascii');
  field(name, 0, 100);
  field('0000644\0', 100, 8);
  field('0000000\0', 108, 8);
  field('0000000\0', 116, 8);
  field(`${content.length.toString(8).padStart(11, '0')}\0`, 124, 12);
  field('00000000000\0', 136, 12);
  field('        ', 148, 8);
  field('0', 156, 1);
  field('ustar\0', 257, 6);
  field('00', 263, 2);
  let sum = 0;
  for (const byte of header) sum += byte;
  field(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8);
  const padding = (512 - (content.length % 512)) % 512;
  return Buffer.concat([header, content, Buffer.alloc(padding), Buffer.alloc(1024)]);
}

export interface ImageSpec {
  readonly seed: number;
  readonly layers: number;
  /** Uncompressed file size per layer (random bytes barely compress, so blob sizes are close). */
  readonly layerSize?: number;
  readonly flavour?: 'oci' | 'docker';
  readonly architecture?: string;
}

/** A single-platform image: config + `layers` tar.gz layers + manifest. */
export function buildImage(spec: ImageSpec): TestImage {
  const docker = spec.flavour === 'docker';
  const blobs = new Map<string, Uint8Array>();
  const layerDescs: Descriptor[] = [];
  const diffIds: string[] = [];
  for (let i = 0; i < spec.layers; i++) {
    const archive = tar(`file-${spec.seed}-${i}`, pseudoRandomBytes(spec.seed * 1000 + i + 1, spec.layerSize ?? 4096));
    diffIds.push(sha256(archive));
    const gz = gzipSync(archive, { level: 1 });
    const digest = sha256(gz);
    blobs.set(digest, gz);
    layerDescs.push({
      mediaType: docker ? MediaTypes.dockerLayerGzip : MediaTypes.ociLayerGzip,
      digest,
      size: gz.length,
    });
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: spec.architecture ?? 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/true'] },
      rootfs: { type: 'layers', diff_ids: diffIds },
    }),
  );
  const configDigest = sha256(config);
  blobs.set(configDigest, config);
  const manifestMediaType = docker ? MediaTypes.dockerManifest : MediaTypes.ociManifest;
  // Two-space indentation on purpose: the registry must store these exact bytes, not a re-serialisation.
  const manifest = Buffer.from(
    JSON.stringify(
      {
        schemaVersion: 2,
        mediaType: manifestMediaType,
        config: {
          mediaType: docker ? MediaTypes.dockerConfig : MediaTypes.ociConfig,
          digest: configDigest,
          size: config.length,
        },
        layers: layerDescs,
      },
      null,
      2,
    ),
  );
  const root: Descriptor = { mediaType: manifestMediaType, digest: sha256(manifest), size: manifest.length };
  return {
    root,
    manifests: new Map([[root.digest, manifest]]),
    blobs,
    blobDigests: [configDigest, ...layerDescs.map((l) => l.digest)],
  };
}

/** An index over several images (one per architecture). */
export function buildIndex(images: readonly TestImage[], flavour: 'oci' | 'docker' = 'oci'): TestImage {
  const architectures = ['amd64', 'arm64', 'ppc64le', 's390x'];
  const mediaType = flavour === 'docker' ? MediaTypes.dockerManifestList : MediaTypes.ociIndex;
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      manifests: images.map((image, i) => ({
        ...image.root,
        platform: { os: 'linux', architecture: architectures[i % architectures.length] },
      })),
    }),
  );
  const root: Descriptor = { mediaType, digest: sha256(index), size: index.length };
  const manifests = new Map<string, Uint8Array>([[root.digest, index]]);
  const blobs = new Map<string, Uint8Array>();
  for (const image of images) {
    for (const [d, b] of image.manifests) manifests.set(d, b);
    for (const [d, b] of image.blobs) blobs.set(d, b);
  }
  return { root, manifests, blobs, blobDigests: images.flatMap((i) => i.blobDigests) };
}

/** Counts what a source was asked, so tests can show that skipped blobs are never read. */
export interface MemorySource extends ImageSource {
  readonly opened: Map<string, number>;
}

/** An ImageSource over a TestImage; streams blobs in `chunk`-byte pieces. */
export function memorySource(image: TestImage, options: { chunk?: number; omit?: string[] } = {}): MemorySource {
  const opened = new Map<string, number>();
  const omit = new Set(options.omit ?? []);
  return {
    opened,
    async size(digest) {
      const blob = image.blobs.get(digest);
      if (blob === undefined) throw new Error(`test source lacks ${digest}`);
      return blob.length;
    },
    async *open(digest, offset = 0) {
      opened.set(digest, (opened.get(digest) ?? 0) + 1);
      const blob = image.blobs.get(digest);
      if (blob === undefined) throw new Error(`test source lacks ${digest}`);
      const step = options.chunk ?? 8192;
      for (let i = offset; i < blob.length; i += step) yield blob.subarray(i, Math.min(i + step, blob.length));
    },
    async manifest(digest) {
      return omit.has(digest) ? undefined : image.manifests.get(digest);
    },
  };
}

export const digestOfBytes = sha256;
