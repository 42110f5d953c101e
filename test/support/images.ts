// Test image factory: builds real OCI / Docker schema 2 images (gzip tar layers with deterministic content from a seed,
// chosen layer count and sizes, shared base layers, multi-platform indexes), pushes them to a registry over the
// distribution HTTP API, pulls them into a node the way the kubelet does (CRI PullImage), and deletes them again
// (registry manifest delete + garbage-collect so the blobs are really gone; content delete on a node).
// Self-contained on purpose: it does not use the product's registry client (src/registry), which it helps to test.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { Metadata, credentials, status as grpcStatus } from '@grpc/grpc-js';
import { ContentClient, DeleteContentRequest } from '../../generated/proto/containerd/services/content/v1/content.ts';
import { connectContainerd } from '../../src/containerd/index.ts';
import { CriClient } from './node-simulator/cri.ts';
import type { ClusterEnv } from './cluster.ts';

export const MediaTypes = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export interface Blob {
  mediaType: string;
  digest: string;
  size: number;
  data: Buffer;
}

export interface Layer extends Blob {
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids entry). */
  diffID: string;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** One platform's manifest with its config and layers. */
export interface PlatformImage {
  platform: Platform;
  manifest: Blob;
  config: Blob;
  layers: Layer[];
}

export interface TestImage {
  /** `repository` inside the registry, e.g. `test/app`. */
  repository: string;
  tag: string;
  format: 'oci' | 'docker';
  /** What the tag points at: the index for multi-platform images, else the single manifest. */
  target: Blob;
  /** The index, when the image has several platforms. */
  index?: Blob;
  platforms: PlatformImage[];
  /** Every blob by digest (index, manifests, configs, layers). */
  blobs: Map<string, Blob>;
  /** `<registry>/<repository>:<tag>` once pushed (or for the registry given to `reference`). */
  reference(registry: string): string;
  /** `<registry>/<repository>@<target digest>`. */
  digestReference(registry: string): string;
}

export interface LayerSpec {
  /** Bytes of (incompressible) file content in the layer. */
  size: number;
  /** Content seed; the same seed and size always give the same layer (and digest). */
  seed?: string;
}

export interface ImageSpec {
  repository: string;
  tag?: string;
  format?: 'oci' | 'docker';
  /** Layers on top of `base`: a list, or a count of `layerSize`-byte layers. Default 1. */
  layers?: LayerSpec[] | number;
  layerSize?: number;
  /** Layers shared with another image (a common base): reused byte for byte, so their digests are equal. */
  base?: Layer[];
  /** Distinguishes otherwise equal images; defaults to repository:tag. */
  seed?: string;
  /** Several platforms make an index (OCI) or manifest list (Docker). Default: linux/amd64 only, no index. */
  platforms?: Platform[];
  /**
   * What the container runs, e.g. `['sh', '-c', 'echo hello; exec sleep 3600']`: the image then starts on a real
   * kubelet. Puts `busyboxLayer()` under the other layers (after `base`), sets the entrypoint and PATH=/bin.
   */
  command?: string[];
}

const sha256 = (data: Buffer | string) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const blob = (mediaType: string, data: Buffer): Blob => ({ mediaType, digest: sha256(data), size: data.length, data });
const json = (value: unknown) => Buffer.from(JSON.stringify(value));

/** Deterministic pseudo-random bytes (SHA-256 in counter mode): incompressible, so sizes are real. */
export function seededBytes(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  let counter = 0;
  for (let offset = 0; offset < size; offset += 32, counter++) {
    createHash('sha256').update(`${seed}/${counter}`).digest().copy(out, offset);
  }
  return out;
}

/** One entry of a ustar archive: a regular file (with its mode), a directory or a symbolic link. */
export type TarEntry =
  | { type: 'file'; path: string; content: Buffer; mode?: number }
  | { type: 'dir'; path: string }
  | { type: 'symlink'; path: string; target: string };

/** A ustar archive of `entries`, in order, with fixed owners and times (equal input, equal bytes). */
export function tarArchive(entries: TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const header = Buffer.alloc(512);
    const put = (text: string, offset: number, length: number) => header.write(text, offset, length, 'ascii');
    const octal = (n: number, length: number) => n.toString(8).padStart(length - 1, '0') + '\0';
    const content = entry.type === 'file' ? entry.content : Buffer.alloc(0);
    const mode = entry.type === 'file' ? (entry.mode ?? 0o644) : entry.type === 'dir' ? 0o755 : 0o777;
    put(entry.path, 0, 100);
    put(octal(mode, 8), 100, 8);
    put(octal(0, 8), 108, 8);
    put(octal(0, 8), 116, 8);
    put(octal(content.length, 12), 124, 12);
    put(octal(1_700_000_000, 12), 136, 12);
    header.fill(' ', 148, 156);
    put(entry.type === 'file' ? '0' : entry.type === 'dir' ? '5' : '2', 156, 1);
    if (entry.type === 'symlink') put(entry.target, 157, 100);
    put('ustar\0', 257, 6);
    put('00', 263, 2);
    let sum = 0;
    for (const b of header) sum += b;
    put(octal(sum, 7) + ' ', 148, 8);
    parts.push(header, content, Buffer.alloc((512 - (content.length % 512)) % 512));
  }
  return Buffer.concat([...parts, Buffer.alloc(1024)]);
}

/** A ustar archive holding one regular file. */
function tarWithFile(path: string, content: Buffer): Buffer {
  return tarArchive([{ type: 'file', path, content }]);
}

/** Where the static busybox comes from (Debian's busybox-static; hack/install-deps.sh installs it). */
export const busyboxBinary = process.env.TOTE_BUSYBOX ?? '/bin/busybox';

let busybox: Layer | undefined;

/**
 * A layer holding a static busybox as /bin/busybox with /bin/sh beside it: images built on it really run on a real
 * kubelet. Built once per process and byte-identical everywhere (the pause image of real nodes uses it too, so every
 * real node already holds this layer). Throws when busybox is missing: a test that needs a running image never skips.
 */
export function busyboxLayer(format: 'oci' | 'docker' = 'oci'): Layer {
  if (!busybox) {
    let binary: Buffer;
    try {
      binary = readFileSync(busyboxBinary);
    } catch (err) {
      throw new Error(`${busyboxBinary} is needed for images that run (apt-get install busybox-static)`, {
        cause: err,
      });
    }
    const tar = tarArchive([
      { type: 'dir', path: 'bin/' },
      { type: 'file', path: 'bin/busybox', content: binary, mode: 0o755 },
      { type: 'symlink', path: 'bin/sh', target: 'busybox' },
      { type: 'dir', path: 'tmp/' },
    ]);
    busybox = { ...blob(MediaTypes.ociLayer, gzipSync(tar, { level: 1 })), diffID: sha256(tar) };
  }
  return { ...busybox, mediaType: format === 'oci' ? MediaTypes.ociLayer : MediaTypes.dockerLayer };
}

/** One gzip'd tar layer with a single file of `size` seeded bytes. */
export function buildLayer(spec: LayerSpec, format: 'oci' | 'docker' = 'oci'): Layer {
  const seed = spec.seed ?? `layer-${spec.size}`;
  const tar = tarWithFile(
    `data/${createHash('sha256').update(seed).digest('hex').slice(0, 16)}`,
    seededBytes(seed, spec.size),
  );
  const gz = gzipSync(tar, { level: 1 });
  return { ...blob(format === 'oci' ? MediaTypes.ociLayer : MediaTypes.dockerLayer, gz), diffID: sha256(tar) };
}

/** Builds an image in memory. Equal specs give byte-identical images (same digests). */
export function buildImage(spec: ImageSpec): TestImage {
  const format = spec.format ?? 'oci';
  const tag = spec.tag ?? 'v1';
  const seed = spec.seed ?? `${spec.repository}:${tag}`;
  const layerSpecs: LayerSpec[] =
    typeof spec.layers === 'number' || spec.layers === undefined
      ? Array.from({ length: typeof spec.layers === 'number' ? spec.layers : 1 }, () => ({
          size: spec.layerSize ?? 4096,
        }))
      : spec.layers;
  const platforms = spec.platforms ?? [{ os: 'linux', architecture: 'amd64' }];
  const m = format === 'oci' ? MediaTypes : undefined;
  const blobs = new Map<string, Blob>();

  const perPlatform = platforms.map((platform, p): PlatformImage => {
    const pid = `${platform.os}/${platform.architecture}${platform.variant ? `/${platform.variant}` : ''}`;
    const base = [...(spec.base ?? []), ...(spec.command ? [busyboxLayer(format)] : [])].map((l) => ({
      ...l,
      mediaType: format === 'oci' ? MediaTypes.ociLayer : MediaTypes.dockerLayer,
    }));
    const own = layerSpecs.map((l, i) =>
      buildLayer(
        { size: l.size, seed: l.seed ? (platforms.length > 1 ? `${l.seed}/${pid}` : l.seed) : `${seed}/${pid}/${i}` },
        format,
      ),
    );
    const layers = [...base, ...own];
    const config = blob(
      m ? MediaTypes.ociConfig : MediaTypes.dockerConfig,
      json({
        architecture: platform.architecture,
        os: platform.os,
        ...(platform.variant ? { variant: platform.variant } : {}),
        created: '2024-01-01T00:00:00Z',
        config: {
          ...(spec.command ? { Entrypoint: spec.command, Env: ['PATH=/bin'] } : { Cmd: ['/data'] }),
          Labels: { 'tote.dev/test-image': seed, 'tote.dev/platform-index': String(p) },
        },
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffID) },
        history: layers.map(() => ({ created: '2024-01-01T00:00:00Z', created_by: 'tote test image factory' })),
      }),
    );
    const manifestType = m ? MediaTypes.ociManifest : MediaTypes.dockerManifest;
    const manifest = blob(
      manifestType,
      json({
        schemaVersion: 2,
        mediaType: manifestType,
        config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
        layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
      }),
    );
    for (const b of [manifest, config, ...layers]) blobs.set(b.digest, b);
    return { platform, manifest, config, layers };
  });

  let index: Blob | undefined;
  if (platforms.length > 1) {
    const indexType = m ? MediaTypes.ociIndex : MediaTypes.dockerList;
    index = blob(
      indexType,
      json({
        schemaVersion: 2,
        mediaType: indexType,
        manifests: perPlatform.map((p) => ({
          mediaType: p.manifest.mediaType,
          digest: p.manifest.digest,
          size: p.manifest.size,
          platform: p.platform,
        })),
      }),
    );
    blobs.set(index.digest, index);
  }
  const target = index ?? perPlatform[0]!.manifest;
  return {
    repository: spec.repository,
    tag,
    format,
    target,
    ...(index ? { index } : {}),
    platforms: perPlatform,
    blobs,
    reference: (registry) => `${registry}/${spec.repository}:${tag}`,
    digestReference: (registry) => `${registry}/${spec.repository}@${target.digest}`,
  };
}

/**
 * The image as an OCI image layout in a tar archive, named `name` (the `io.containerd.image.name` annotation), as
 * `ctr images import` takes it: how real nodes get their pause image without any registry.
 */
export function ociArchive(image: TestImage, name: string): Buffer {
  const entries: TarEntry[] = [
    { type: 'file', path: 'oci-layout', content: json({ imageLayoutVersion: '1.0.0' }) },
    {
      type: 'file',
      path: 'index.json',
      content: json({
        schemaVersion: 2,
        mediaType: MediaTypes.ociIndex,
        manifests: [
          {
            mediaType: image.target.mediaType,
            digest: image.target.digest,
            size: image.target.size,
            annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': image.tag },
          },
        ],
      }),
    },
    { type: 'dir', path: 'blobs/' },
    { type: 'dir', path: 'blobs/sha256/' },
  ];
  for (const b of image.blobs.values())
    entries.push({ type: 'file', path: `blobs/sha256/${b.digest.slice('sha256:'.length)}`, content: b.data });
  return tarArchive(entries);
}

// --- registry HTTP --------------------------------------------------------------------------------------------------

export interface RegistryTarget {
  /** host:port */
  host: string;
  tls?: { ca: string | Buffer };
  auth?: { username: string; password: string };
}

/** The source registry (plain HTTP) or the backup registry (TLS + basic auth) of a cluster. */
export function registries(env: ClusterEnv): { source: RegistryTarget; backup: RegistryTarget } {
  return {
    source: { host: env.sourceRegistry },
    backup: {
      host: env.backupRegistry,
      tls: { ca: readFileSync(env.caFile) },
      auth: { username: env.backupRegistryUser, password: env.backupRegistryPassword },
    },
  };
}

interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function http(
  target: RegistryTarget,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: Buffer,
): Promise<HttpResponse> {
  const url = path.startsWith('http')
    ? new URL(path)
    : new URL(`${target.tls ? 'https' : 'http'}://${target.host}${path}`);
  const h: Record<string, string> = { ...headers };
  if (target.auth)
    h.authorization = `Basic ${Buffer.from(`${target.auth.username}:${target.auth.password}`).toString('base64')}`;
  if (body) h['content-length'] = String(body.length);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      url,
      { method, headers: h, ...(target.tls ? { ca: target.tls.ca } : {}), timeout: 60_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

function expect(res: HttpResponse, ok: number[], what: string): void {
  if (!ok.includes(res.status))
    throw new Error(`${what}: HTTP ${res.status} ${res.body.toString('utf8').slice(0, 300)}`);
}

async function pushBlob(target: RegistryTarget, repository: string, b: Blob): Promise<void> {
  const head = await http(target, 'HEAD', `/v2/${repository}/blobs/${b.digest}`);
  if (head.status === 200) return;
  const start = await http(target, 'POST', `/v2/${repository}/blobs/uploads/`);
  expect(start, [202], `start upload of ${b.digest}`);
  const location = new URL(String(start.headers.location), `${target.tls ? 'https' : 'http'}://${target.host}`);
  location.searchParams.set('digest', b.digest);
  const put = await http(target, 'PUT', location.toString(), { 'content-type': 'application/octet-stream' }, b.data);
  expect(put, [201], `upload of ${b.digest}`);
}

async function putManifest(target: RegistryTarget, repository: string, ref: string, m: Blob): Promise<void> {
  const res = await http(target, 'PUT', `/v2/${repository}/manifests/${ref}`, { 'content-type': m.mediaType }, m.data);
  expect(res, [201], `put manifest ${repository}:${ref}`);
}

/** Pushes every blob, the platform manifests and the tag. Idempotent. */
export async function pushImage(target: RegistryTarget, image: TestImage): Promise<void> {
  for (const p of image.platforms) {
    for (const b of [p.config, ...p.layers]) await pushBlob(target, image.repository, b);
    if (image.index) await putManifest(target, image.repository, p.manifest.digest, p.manifest);
  }
  await putManifest(target, image.repository, image.tag, image.target);
}

const acceptAll = [MediaTypes.ociIndex, MediaTypes.ociManifest, MediaTypes.dockerList, MediaTypes.dockerManifest].join(
  ', ',
);

/** The digest the registry serves for `repository:reference`, or undefined when it serves nothing. */
export async function registryDigest(
  target: RegistryTarget,
  repository: string,
  reference: string,
): Promise<string | undefined> {
  const res = await http(target, 'HEAD', `/v2/${repository}/manifests/${reference}`, { accept: acceptAll });
  if (res.status === 404) return undefined;
  expect(res, [200], `HEAD manifest ${repository}:${reference}`);
  return String(res.headers['docker-content-digest']);
}

/** Whether the registry still has the blob (after garbage-collect a deleted image's blobs are gone). */
export async function registryHasBlob(target: RegistryTarget, repository: string, digest: string): Promise<boolean> {
  const res = await http(target, 'HEAD', `/v2/${repository}/blobs/${digest}`);
  return res.status === 200;
}

const run = promisify(execFile);

/**
 * Makes the registry lose the image: deletes the tagged manifest (and, for an index, its platform manifests), then
 * runs `docker-registry garbage-collect --delete-untagged` so layers and configs are really removed from storage.
 * `configFile` is the registry's config (ClusterEnv.sourceRegistryConfig); omit it to delete manifests only.
 */
export async function deleteImageFromRegistry(
  target: RegistryTarget,
  image: TestImage,
  configFile?: string,
): Promise<void> {
  const manifests = [image.target.digest, ...(image.index ? image.platforms.map((p) => p.manifest.digest) : [])];
  for (const digest of manifests) {
    const res = await http(target, 'DELETE', `/v2/${image.repository}/manifests/${digest}`);
    expect(res, [202, 404], `delete manifest ${digest}`);
  }
  if (configFile) await run('docker-registry', ['garbage-collect', '--delete-untagged=true', configFile]);
}

// --- nodes ----------------------------------------------------------------------------------------------------------

/** Pulls `ref` into one node's containerd exactly as the kubelet would (CRI PullImage); resolves to the image id. */
export async function pullToNode(socket: string, ref: string): Promise<string> {
  const cri = new CriClient(socket);
  try {
    return await cri.pullImage(ref);
  } finally {
    cri.close();
  }
}

/** Removes `ref` from a node through CRI (like `crictl rmi`). */
export async function removeFromNode(socket: string, ref: string): Promise<void> {
  const cri = new CriClient(socket);
  try {
    await cri.removeImage(ref);
  } finally {
    cri.close();
  }
}

/** Whether the node's CRI knows `ref` (tag, digest reference or id). */
export async function nodeHasImage(socket: string, ref: string): Promise<boolean> {
  const cri = new CriClient(socket);
  try {
    return (await cri.imageStatus(ref)) !== undefined;
  } finally {
    cri.close();
  }
}

/** The labels of every image record of `digest` on a node (containerd's k8s.io namespace), by record name. */
export async function nodeImageLabels(socket: string, digest: string): Promise<Map<string, Record<string, string>>> {
  const containerd = connectContainerd({ socket, namespace: 'k8s.io' });
  try {
    const records = await containerd.images.list([`target.digest==${digest}`]);
    return new Map(records.map((r) => [r.name, { ...r.labels }]));
  } finally {
    containerd.close();
  }
}

/**
 * Deletes blobs from a node's content store while the image record stays: the node then has a "broken" image
 * (the kubelet sees it present; creating a container fails with CreateContainerError).
 */
export async function deleteBlobsFromNode(socket: string, digests: string[]): Promise<void> {
  const client = new ContentClient(`unix://${socket}`, credentials.createInsecure());
  const md = new Metadata();
  md.set('containerd-namespace', 'k8s.io');
  try {
    for (const digest of digests) {
      await new Promise<void>((resolve, reject) =>
        client.delete(
          DeleteContentRequest.fromPartial({ digest }),
          md,
          { deadline: new Date(Date.now() + 10_000) },
          (err) => (err && err.code !== grpcStatus.NOT_FOUND ? reject(err) : resolve()),
        ),
      );
    }
  } finally {
    client.close();
  }
}
