// Would creating a container from this image fail on this node? containerd creates a container's root filesystem from
// the image's manifest, config and layers in its content store; when one is gone it fails with its own message, which
// the kubelet shows as CreateContainerError. This module reads the same blobs through containerd's own gRPC API
// (images, content) in the CRI namespace and reproduces containerd 1.6's message for the first missing one.
//
// Simplification (documented in docs/cluster.md): a layer whose blob is gone but whose snapshot is still unpacked
// would not stop real containerd; the simulator only looks at the content store, which is what tote repairs.
import { Metadata, credentials, status as grpcStatus } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import {
  ContentClient,
  InfoRequest,
  ReadContentRequest,
} from '../../../generated/proto/containerd/services/content/v1/content.ts';
import { GetImageRequest, ImagesClient } from '../../../generated/proto/containerd/services/images/v1/images.ts';
import type { Image as CriImage } from '../../../generated/proto/cri/runtime/v1/api.ts';

const namespace = 'k8s.io';
const deadline = (ms: number) => ({ deadline: new Date(Date.now() + ms) });
const metadata = () => {
  const m = new Metadata();
  m.set('containerd-namespace', namespace);
  return m;
};

interface Descriptor {
  mediaType?: string;
  digest: string;
  platform?: { os?: string; architecture?: string; variant?: string };
}

const indexTypes = new Set([
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
]);

class Missing extends Error {}

export class BlobChecker {
  readonly #content: ContentClient;
  readonly #images: ImagesClient;

  constructor(socket: string) {
    const options = { 'grpc.max_receive_message_length': 64 * 1024 * 1024 };
    this.#content = new ContentClient(`unix://${socket}`, credentials.createInsecure(), options);
    this.#images = new ImagesClient(`unix://${socket}`, credentials.createInsecure(), options);
  }

  close(): void {
    this.#content.close();
    this.#images.close();
  }

  /** containerd's error for creating a container from `image`, or undefined when every blob it needs is present. */
  async createContainerError(image: CriImage): Promise<string | undefined> {
    const name = image.repoTags[0] ?? image.repoDigests[0] ?? image.id;
    const target = await this.#imageTarget(name);
    if (!target) return undefined; // CRI knows it under another name only; nothing to check against
    const prefix = 'failed to create containerd container: error unpacking image';
    let manifest: { config?: Descriptor; layers?: Descriptor[] };
    let config: { rootfs?: { diff_ids?: string[] } };
    try {
      manifest = await this.#manifestFor(target);
      if (!manifest.config) return undefined;
      config = JSON.parse((await this.#read(manifest.config.digest)).toString('utf8')) as typeof config;
    } catch (err) {
      if (err instanceof Missing) return `${prefix}: failed to resolve rootfs: ${err.message}`;
      throw err;
    }
    const diffIDs = config.rootfs?.diff_ids ?? [];
    for (const [i, layer] of (manifest.layers ?? []).entries()) {
      if (!(await this.#exists(layer.digest))) {
        return `${prefix}: failed to extract layer ${diffIDs[i] ?? layer.digest}: failed to get reader from content store: content digest ${layer.digest}: not found`;
      }
    }
    return undefined;
  }

  async #imageTarget(name: string): Promise<Descriptor | undefined> {
    return new Promise((resolve, reject) => {
      this.#images.get(GetImageRequest.fromPartial({ name }), metadata(), deadline(10_000), (err, res) => {
        if (err?.code === grpcStatus.NOT_FOUND) resolve(undefined);
        else if (err) reject(err);
        else resolve(res.image?.target);
      });
    });
  }

  /** The manifest this node's platform (linux/amd64) uses: the target itself, or its best match in an index. */
  async #manifestFor(target: Descriptor): Promise<{ config?: Descriptor; layers?: Descriptor[] }> {
    const doc = JSON.parse((await this.#read(target.digest)).toString('utf8')) as {
      mediaType?: string;
      manifests?: Descriptor[];
      config?: Descriptor;
      layers?: Descriptor[];
    };
    if (!indexTypes.has(target.mediaType ?? '') && !doc.manifests) return doc;
    const candidates = (doc.manifests ?? []).filter(
      (m) => m.platform?.os === 'linux' && m.platform.architecture === 'amd64',
    );
    const best = candidates.find((m) => !m.platform?.variant) ?? candidates[0];
    if (!best) throw new Missing(`no match for platform in manifest ${target.digest}: not found`);
    return this.#manifestFor(best);
  }

  #exists(digest: string): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.#content.info(InfoRequest.fromPartial({ digest }), metadata(), deadline(10_000), (err) => {
        if (err?.code === grpcStatus.NOT_FOUND) resolve(false);
        else if (err) reject(err);
        else resolve(true);
      });
    });
  }

  #read(digest: string): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const stream = this.#content.read(ReadContentRequest.fromPartial({ digest }), metadata(), deadline(30_000));
      stream.on('data', (r: { data: Uint8Array }) => chunks.push(Buffer.from(r.data)));
      stream.on('error', (err: ServiceError) =>
        reject(err.code === grpcStatus.NOT_FOUND ? new Missing(`content digest ${digest}: not found`) : err),
      );
      stream.on('end', () => resolve(Buffer.concat(chunks)));
    });
  }
}
