// The containerd adapter: the interfaces of types.ts over containerd's gRPC API on its unix socket.
//
// Concurrency: one gRPC channel (HTTP/2 connection) is shared by every call; calls are independent and may run in
// parallel. Each call carries its own deadline and, optionally, an AbortSignal that cancels it. A ContentWriter owns one
// bidirectional stream and is used by one caller at a time (see writer.ts).
import { setTimeout } from 'node:timers/promises';
import { credentials, makeGenericClientConstructor, Metadata } from '@grpc/grpc-js';
import type { CallOptions as GrpcCallOptions, ClientUnaryCall, ServiceError, ChannelOptions } from '@grpc/grpc-js';
import { ContentService, WriteContentRequest } from '../../generated/proto/containerd/services/content/v1/content.ts';
import type {
  ContentClient,
  Info as PbInfo,
  Status as PbStatus,
} from '../../generated/proto/containerd/services/content/v1/content.ts';
import { ImageServiceClient, ImageStatusRequest } from '../../generated/proto/cri/runtime/v1/api.ts';
import { ImagesClient } from '../../generated/proto/containerd/services/images/v1/images.ts';
import type { Image as PbImage } from '../../generated/proto/containerd/services/images/v1/images.ts';
import { LeasesClient } from '../../generated/proto/containerd/services/leases/v1/leases.ts';
import { NamespacesClient } from '../../generated/proto/containerd/services/namespaces/v1/namespace.ts';
import { VersionClient } from '../../generated/proto/containerd/services/version/v1/version.ts';
import type { Timestamp } from '../../generated/proto/google/protobuf/timestamp.ts';
import type { Descriptor as PbDescriptor } from '../../generated/proto/containerd/types/descriptor.ts';
import { ToteError } from '../api/errors.ts';
import { appendBytesField, limitBuffering } from '../grpc/wire.ts';
import { fromContainerdError } from './errors.ts';
import { criNamespace, gcExpireLabel } from './labels.ts';
import type {
  CallOptions,
  Containerd,
  ContentInfo,
  ContentStore,
  ContentWriter,
  CriImages,
  Descriptor,
  ImageRecord,
  ImageRecordInput,
  ImageStore,
  IngestStatus,
  Lease,
  LeaseManager,
  LeaseResource,
  WriterOptions,
} from './types.ts';
import { openContentWriter } from './writer.ts';

/** containerd accepts 16 MiB messages; grpc-js defaults to 4 MiB, which Images.List on a big node exceeds. */
export const maxMessageBytes = 16 * 1024 * 1024;
const defaultUnaryTimeoutMs = 30_000;
/** Content.Read messages decoded ahead of the reader (containerd sends ≤ 1 MiB each). */
const readAheadMessages = 2;
const defaultStreamTimeoutMs = 60 * 60_000;
const abortRetryMs = 5_000;

export interface ContainerdOptions {
  /** Path of containerd's socket, e.g. /run/containerd/containerd.sock (a `unix://` prefix is accepted). */
  readonly socket: string;
  /** Namespace for every call; CRI's is k8s.io. */
  readonly namespace?: string;
  /** Default deadline of unary calls in milliseconds. */
  readonly timeoutMs?: number;
}

/** Connects to containerd (lazily: the first call dials). */
export function connectContainerd(options: ContainerdOptions): Containerd {
  return new GrpcContainerd(options);
}

const noBytes = new Uint8Array(0);

/**
 * The Content client with a single-copy encoder for Write requests (see grpc/wire.ts): every byte an import writes goes
 * through it. `data` is field 6 of WriteContentRequest.
 */
const FastContentClient = makeGenericClientConstructor(
  {
    ...ContentService,
    write: {
      ...ContentService.write,
      requestSerialize: (value: WriteContentRequest): Buffer =>
        appendBytesField(WriteContentRequest.encode({ ...value, data: noBytes }).finish(), 6, value.data),
    },
  },
  'containerd.services.content.v1.Content',
) as unknown as typeof ContentClient;

type Callback<Res> = (err: ServiceError | null, res: Res) => void;
type UnaryFn<Req, Res> = (req: Req, md: Metadata, opts: Partial<GrpcCallOptions>, cb: Callback<Res>) => ClientUnaryCall;

const toDate = (t: Timestamp | undefined): Date | undefined =>
  t === undefined ? undefined : new Date(t.seconds * 1000 + Math.floor(t.nanos / 1e6));

const toInfo = (i: PbInfo | undefined, digest: string): ContentInfo => ({
  digest: i?.digest ?? digest,
  size: i?.size ?? 0,
  createdAt: toDate(i?.createdAt),
  updatedAt: toDate(i?.updatedAt),
  labels: { ...(i?.labels ?? {}) },
});

const toStatus = (s: PbStatus | undefined, ref: string): IngestStatus => ({
  ref: s?.ref || ref,
  offset: s?.offset ?? 0,
  total: s?.total ?? 0,
  expected: s?.expected ?? '',
  startedAt: toDate(s?.startedAt),
  updatedAt: toDate(s?.updatedAt),
});

const toDescriptor = (d: PbDescriptor | undefined): Descriptor => ({
  mediaType: d?.mediaType ?? '',
  digest: d?.digest ?? '',
  size: d?.size ?? 0,
  annotations: { ...(d?.annotations ?? {}) },
});

const toImage = (i: PbImage | undefined): ImageRecord => ({
  name: i?.name ?? '',
  target: toDescriptor(i?.target),
  labels: { ...(i?.labels ?? {}) },
  createdAt: toDate(i?.createdAt),
  updatedAt: toDate(i?.updatedAt),
});

const fromImage = (i: ImageRecordInput): PbImage => ({
  name: i.name,
  labels: { ...(i.labels ?? {}) },
  target: {
    mediaType: i.target.mediaType,
    digest: i.target.digest,
    size: i.target.size,
    annotations: { ...(i.target.annotations ?? {}) },
  },
});

class GrpcContainerd implements Containerd {
  readonly namespace: string;
  readonly content: ContentStore;
  readonly images: ImageStore;
  readonly leases: LeaseManager;
  readonly cri: CriImages;
  readonly #timeoutMs: number;
  readonly #contentClient: ContentClient;
  readonly #imagesClient: ImagesClient;
  readonly #leasesClient: LeasesClient;
  readonly #namespacesClient: NamespacesClient;
  readonly #versionClient: VersionClient;
  readonly #criImagesClient: ImageServiceClient;

  constructor(options: ContainerdOptions) {
    this.namespace = options.namespace ?? criNamespace;
    this.#timeoutMs = options.timeoutMs ?? defaultUnaryTimeoutMs;
    const target = `unix://${options.socket.replace(/^unix:\/\//, '')}`;
    const channelOptions: ChannelOptions = {
      'grpc.max_receive_message_length': maxMessageBytes,
      'grpc.max_send_message_length': maxMessageBytes,
      // HTTP/2's default 64 KiB receive window caps a Read stream at one window per round trip: open it, but only to
      // 2 MiB (two containerd messages): on a unix socket that keeps Read as fast as 8 MiB did, with less memory per
      // stream (bench-transfer, docs/agent.md).
      'grpc-node.flow_control_window': 2 * 1024 * 1024,
      // containerd does not run a name resolver for unix sockets; the authority is cosmetic.
      'grpc.default_authority': 'localhost',
    };
    const creds = credentials.createInsecure();
    this.#contentClient = new FastContentClient(target, creds, channelOptions);
    const channelOverride = this.#contentClient.getChannel();
    this.#imagesClient = new ImagesClient(target, creds, { ...channelOptions, channelOverride });
    this.#leasesClient = new LeasesClient(target, creds, { ...channelOptions, channelOverride });
    this.#namespacesClient = new NamespacesClient(target, creds, { ...channelOptions, channelOverride });
    this.#versionClient = new VersionClient(target, creds, { ...channelOptions, channelOverride });
    this.#criImagesClient = new ImageServiceClient(target, creds, { ...channelOptions, channelOverride });
    this.content = this.#makeContentStore();
    this.images = this.#makeImageStore();
    this.leases = this.#makeLeaseManager();
    this.cri = this.#makeCriImages();
  }

  /** Metadata for a call: always the namespace, and the lease when asked. */
  metadata(options?: CallOptions): Metadata {
    const md = new Metadata();
    md.set('containerd-namespace', this.namespace);
    if (options?.lease !== undefined) md.set('containerd-lease', options.lease);
    return md;
  }

  deadline(options: CallOptions | undefined, fallbackMs: number): Date {
    return new Date(Date.now() + (options?.timeoutMs ?? fallbackMs));
  }

  unary<Req, Res>(operation: string, fn: UnaryFn<Req, Res>, req: Req, options?: CallOptions): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      if (options?.signal?.aborted) {
        reject(new ToteError('transient', 'Cancelled', `containerd ${operation}: cancelled`));
        return;
      }
      const onAbort = () => call.cancel();
      const call = fn(
        req,
        this.metadata(options),
        { deadline: this.deadline(options, this.#timeoutMs) },
        (err, res) => {
          options?.signal?.removeEventListener('abort', onAbort);
          if (err) reject(fromContainerdError(err, operation));
          else resolve(res);
        },
      );
      options?.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Runs a unary call, mapping `not-found` to undefined. */
  async optional<Res>(call: Promise<Res>): Promise<Res | undefined> {
    try {
      return await call;
    } catch (err) {
      if (err instanceof ToteError && err.kind === 'not-found') return undefined;
      throw err;
    }
  }

  async ignoreNotFound(call: Promise<unknown>): Promise<void> {
    await this.optional(call);
  }

  #makeContentStore(): ContentStore {
    const c = this.#contentClient;
    return {
      info: async (digest, options) => {
        const res = await this.optional(this.unary(`content.Info ${digest}`, c.info.bind(c), { digest }, options));
        return res === undefined ? undefined : toInfo(res.info, digest);
      },
      updateLabels: async (digest, labels, options) => {
        const res = await this.unary(
          `content.Update ${digest}`,
          c.update.bind(c),
          {
            info: { digest, size: 0, labels: Object.fromEntries(Object.entries(labels).filter(([, v]) => v !== '')) },
            updateMask: Object.keys(labels).map((k) => `labels.${k}`),
          },
          options,
        );
        return toInfo(res.info, digest);
      },
      list: async (filters = [], options) => {
        const out: ContentInfo[] = [];
        const call = c.list({ filters: [...filters] }, this.metadata(options), {
          deadline: this.deadline(options, this.#timeoutMs),
        });
        try {
          for await (const msg of call as AsyncIterable<{ info: PbInfo[] }>) {
            for (const info of msg.info) out.push(toInfo(info, info.digest));
          }
        } catch (err) {
          throw fromContainerdError(err, 'content.List');
        }
        return out;
      },
      delete: (digest, options) =>
        this.ignoreNotFound(this.unary(`content.Delete ${digest}`, c.delete.bind(c), { digest }, options)),
      read: (digest, offset = 0, options) => this.#read(digest, offset, options),
      readAll: async (digest, maxBytes, options) => {
        const info = await this.content.info(digest, options);
        if (info === undefined) throw new ToteError('not-found', 'BlobNotFound', `content ${digest} not found`);
        if (info.size > maxBytes) {
          throw new ToteError('terminal', 'BlobTooLarge', `content ${digest} is ${info.size} bytes, over ${maxBytes}`);
        }
        const parts: Uint8Array[] = [];
        let size = 0;
        for await (const part of this.content.read(digest, 0, options)) {
          size += part.length;
          if (size > maxBytes) {
            throw new ToteError('terminal', 'BlobTooLarge', `content ${digest} is over ${maxBytes} bytes`);
          }
          parts.push(part);
        }
        return Buffer.concat(parts);
      },
      ingestStatus: async (ref, options) => {
        const res = await this.optional(this.unary(`content.Status ${ref}`, c.status.bind(c), { ref }, options));
        return res?.status === undefined ? undefined : toStatus(res.status, ref);
      },
      listIngests: async (filters = [], options) => {
        const res = await this.unary(
          'content.ListStatuses',
          c.listStatuses.bind(c),
          { filters: [...filters] },
          options,
        );
        return res.statuses.map((s) => toStatus(s, s.ref));
      },
      abortIngest: async (ref, options) => {
        // Right after a writer's stream is cancelled, containerd may still hold the ingest (its handler has not seen
        // the cancellation yet) and Abort fails with UNKNOWN/UNAVAILABLE: retry briefly with backoff.
        const deadline = Date.now() + (options?.timeoutMs ?? abortRetryMs);
        for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
          try {
            await this.ignoreNotFound(this.unary(`content.Abort ${ref}`, c.abort.bind(c), { ref }, options));
            return;
          } catch (err) {
            if (!(err instanceof ToteError && err.kind === 'transient') || Date.now() + delay > deadline) throw err;
            await setTimeout(delay, undefined, { signal: options?.signal });
          }
        }
      },
      openWriter: async (ref: string, options: WriterOptions): Promise<ContentWriter> => {
        // A ref stays locked until containerd notices that the previous writer's stream is gone (UNAVAILABLE
        // "locked"): a resume right after an interruption retries briefly with backoff.
        const lockDeadline = Date.now() + abortRetryMs;
        for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
          const call = c.write(this.metadata(options), { deadline: this.deadline(options, defaultStreamTimeoutMs) });
          try {
            return await openContentWriter(call, ref, options);
          } catch (err) {
            if (!(err instanceof ToteError && err.kind === 'transient') || Date.now() + delay > lockDeadline) throw err;
            if (options.signal?.aborted) throw err;
            await setTimeout(delay, undefined, { signal: options.signal });
          }
        }
      },
    };
  }

  async *#read(digest: string, offset: number, options?: CallOptions): AsyncGenerator<Uint8Array> {
    const call = this.#contentClient.read({ digest, offset, size: 0 }, this.metadata(options), {
      deadline: this.deadline(options, defaultStreamTimeoutMs),
    });
    // Two 1 MiB messages ahead of the reader, not grpc-js's 16: the HTTP/2 window keeps the socket busy.
    limitBuffering(call, 'read', readAheadMessages);
    const onAbort = () => call.cancel();
    options?.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const msg of call as AsyncIterable<{ data: Buffer }>) yield msg.data;
    } catch (err) {
      throw fromContainerdError(err, `content.Read ${digest}@${offset}`);
    } finally {
      options?.signal?.removeEventListener('abort', onAbort);
      call.cancel();
    }
  }

  #makeImageStore(): ImageStore {
    const c = this.#imagesClient;
    return {
      get: async (name, options) => {
        const res = await this.optional(this.unary(`images.Get ${name}`, c.get.bind(c), { name }, options));
        return res === undefined ? undefined : toImage(res.image);
      },
      list: async (filters = [], options) => {
        const res = await this.unary('images.List', c.list.bind(c), { filters: [...filters] }, options);
        return res.images.map(toImage);
      },
      create: async (image, options) => {
        const res = await this.unary(
          `images.Create ${image.name}`,
          c.create.bind(c),
          { image: fromImage(image) },
          options,
        );
        return toImage(res.image);
      },
      update: async (image, fields, options) => {
        const res = await this.unary(
          `images.Update ${image.name}`,
          c.update.bind(c),
          { image: fromImage(image), updateMask: [...fields] },
          options,
        );
        return toImage(res.image);
      },
      delete: (name, options) =>
        this.ignoreNotFound(
          this.unary(`images.Delete ${name}`, c.delete.bind(c), { name, sync: options?.sync ?? false }, options),
        ),
    };
  }

  #makeLeaseManager(): LeaseManager {
    const c = this.#leasesClient;
    const toLease = (l: { id: string; labels: Record<string, string>; createdAt?: Timestamp }): Lease => ({
      id: l.id,
      labels: { ...l.labels },
      createdAt: toDate(l.createdAt),
    });
    return {
      create: async (id, expiresAt, labels = {}, options) => {
        const res = await this.unary(
          `leases.Create ${id}`,
          c.create.bind(c),
          { id, labels: { ...labels, [gcExpireLabel]: expiresAt.toISOString().replace(/\.\d{3}Z$/, 'Z') } },
          options,
        );
        return toLease(res.lease ?? { id, labels: {} });
      },
      delete: (id, options) =>
        this.ignoreNotFound(
          this.unary(`leases.Delete ${id}`, c.delete.bind(c), { id, sync: options?.sync ?? false }, options),
        ),
      list: async (filters = [], options) => {
        const res = await this.unary('leases.List', c.list.bind(c), { filters: [...filters] }, options);
        return res.leases.map(toLease);
      },
      addResource: async (id, resource, options) => {
        await this.unary(`leases.AddResource ${id}`, c.addResource.bind(c), { id, resource: { ...resource } }, options);
      },
      listResources: async (id, options) => {
        const res = await this.unary(`leases.ListResources ${id}`, c.listResources.bind(c), { id }, options);
        return res.resources.map((r) => ({ id: r.id, type: r.type }));
      },
    };
  }

  #makeCriImages(): CriImages {
    const c = this.#criImagesClient;
    return {
      imageId: async (reference, options) => {
        const res = await this.unary(
          `cri.ImageStatus ${reference}`,
          c.imageStatus.bind(c),
          ImageStatusRequest.fromPartial({ image: { image: reference } }),
          options,
        );
        // CRI answers an unknown image with an empty status, not NOT_FOUND.
        return res.image?.id || undefined;
      },
    };
  }

  async version(options?: CallOptions): Promise<{ version: string; revision: string }> {
    const c = this.#versionClient;
    const res = await this.unary('version.Version', c.version.bind(c), {}, options);
    return { version: res.version, revision: res.revision };
  }

  async namespaces(options?: CallOptions): Promise<string[]> {
    const c = this.#namespacesClient;
    const res = await this.unary('namespaces.List', c.list.bind(c), { filter: '' }, options);
    return res.namespaces.map((n) => n.name);
  }

  close(): void {
    this.#contentClient.close();
    this.#imagesClient.close();
    this.#leasesClient.close();
    this.#namespacesClient.close();
    this.#versionClient.close();
    this.#criImagesClient.close();
  }
}

export type { LeaseResource };
