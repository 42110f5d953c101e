// The node agent's server: tote.agent.v1.AgentService and grpc.health.v1.Health over mTLS (TLS 1.3), blob reads for
// peer agents over HTTP/1.1 on the same port (listener.ts), plus an optional plaintext health-only listener for
// kubelet probes (which cannot present a client certificate).
//
// Concurrency: handlers run concurrently on Node's event loop. Imports are serialised per image digest (a second
// Import of a digest already importing is refused as transient, to be retried), so two transfers never write the same
// ingests; different digests import in parallel, each with its own lease. ReadBlob streams respect HTTP/2 flow
// control: the handler waits for 'drain' before reading more from containerd, so memory per stream stays bounded.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { KeyObject } from 'node:crypto';
import { Server, ServerCredentials, status as Status } from '@grpc/grpc-js';
import type { sendUnaryData, ServerUnaryCall, ServerWritableStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import {
  AgentServiceService,
  BlobRole,
  ImportPhase,
  ReadBlobResponse,
} from '../../generated/proto/tote/agent/v1/agent.ts';
import type * as pb from '../../generated/proto/tote/agent/v1/agent.ts';
import { HealthCheckResponse_ServingStatus, HealthService } from '../../generated/proto/grpc/health/v1/health.ts';
import type { HealthCheckRequest, HealthCheckResponse } from '../../generated/proto/grpc/health/v1/health.ts';
import { isToteError, ToteError } from '../api/errors.ts';
import type { ErrorKind } from '../api/errors.ts';
import { appendBytesField, limitBuffering } from '../grpc/wire.ts';
import type { Containerd } from '../containerd/index.ts';
import {
  connectAgent,
  describeIdentity,
  HttpsBlobReader,
  identityFromCertificate,
  toStatus,
} from '../agentapi/index.ts';
import type { PeerIdentity, TlsMaterial } from '../agentapi/index.ts';
import { RegistryClient, staticCredentials } from '../registry/index.ts';
import { listNodeImages, localPlan, missingBlobs, rootOf } from './images.ts';
import { recordNameFor } from '../registry/index.ts';
import type { NodeImage } from './images.ts';
import { blobEndpoint } from './blob-endpoint.ts';
import { checkPeerToken, openBlobForPeer, requireDigest } from './blob-service.ts';
import type { BlobServiceDeps } from './blob-service.ts';
import { ContentDir } from './content-dir.ts';
import { listenMultiplexed } from './listener.ts';
import { createAgentMetrics } from './metrics.ts';
import type { AgentMetrics } from './metrics.ts';
import { hostPlatform, normalizePlatform } from './oci.ts';
import type { Platform } from './oci.ts';
import { runImport } from './transfer.ts';
import type { BlobPeer, ImportProgress } from './transfer.ts';
import { blobSourceOver } from './push.ts';

export const agentVersion = '0.1.0';

export interface AgentServerOptions {
  /** This node's name, as in its certificate (urn:tote:node:<name>) and in transfer tokens. */
  readonly nodeName: string;
  readonly containerd: Containerd;
  readonly tls: TlsMaterial;
  /** The controller's Ed25519 public key (PEM or KeyObject) that signs transfer tokens. */
  readonly tokenPublicKey: string | KeyObject;
  /** host:port to listen on for the mTLS API; port 0 picks a free one. */
  readonly listen: string;
  /** Optional host:port for a plaintext health-only server (kubelet gRPC probes). */
  readonly healthListen?: string;
  readonly registry: Registry;
  /** Default: the platform this process runs on. */
  readonly platform?: Platform;
  /** Plans larger than this are refused unless an Import asks for less; default 2 GiB. */
  readonly maxImageBytes?: number;
  /** Blobs fetched at once by default; default 4. */
  readonly parallelism?: number;
  /** Lifetime of a transfer's lease if the agent dies mid-way; default 1 h. */
  readonly leaseTtlMs?: number;
  /** How to reach a source agent; default: gRPC for plans, HTTPS for blob bytes, with this agent's certificate. */
  readonly connectPeer?: (address: string, node: string) => BlobPeer & { close(): void };
  /**
   * containerd's content store directory (io.containerd.content.v1.content), when mounted: blobs are then served
   * from their files and imported by placing verified files (content-dir.ts). Absent or unusable: the content API.
   */
  readonly contentDir?: string;
}

export interface AgentServer {
  /** host:port the mTLS API listens on. */
  readonly address: string;
  readonly healthAddress?: string;
  readonly metrics: AgentMetrics;
  /** The content store directory used directly, when one was given and looks like containerd's. */
  readonly contentDir?: string;
  /** Stops accepting calls, cancels running ones, and waits for the listeners to close. */
  stop(): Promise<void>;
}

const gib = 1024 * 1024 * 1024;

const toPbPlatform = (p: Platform): pb.Platform => ({
  os: p.os,
  architecture: p.architecture,
  variant: p.variant ?? '',
});
const fromPbPlatform = (p: pb.Platform | undefined): Platform | undefined =>
  p === undefined || (p.os === '' && p.architecture === '')
    ? undefined
    : normalizePlatform({ os: p.os, architecture: p.architecture, ...(p.variant ? { variant: p.variant } : {}) });

const toPbImage = (i: NodeImage): pb.Image => ({
  names: i.names,
  digest: i.digest,
  mediaType: i.mediaType,
  size: i.size,
  platforms: i.platforms.map(toPbPlatform),
  complete: i.complete,
  missingDigests: i.missingDigests,
  configDigest: i.configDigest,
  managed: i.managed,
  pinned: i.pinned,
});

const phaseOf: Record<ImportProgress['phase'], ImportPhase> = {
  planning: ImportPhase.IMPORT_PHASE_PLANNING,
  transferring: ImportPhase.IMPORT_PHASE_TRANSFERRING,
  recording: ImportPhase.IMPORT_PHASE_RECORDING,
  completed: ImportPhase.IMPORT_PHASE_COMPLETED,
};

const toPbProgress = (p: ImportProgress): pb.ImportResponse => ({
  phase: phaseOf[p.phase],
  bytesTotal: p.bytesTotal,
  bytesTransferred: p.bytesTransferred,
  bytesSkipped: p.bytesSkipped,
  bytesResumed: p.bytesResumed,
  blobsTotal: p.blobsTotal,
  blobsPresent: p.blobsPresent,
  blobsTransferred: p.blobsTransferred,
  imageNames: p.imageNames,
  configDigest: p.configDigest,
});

const roleOf = {
  index: BlobRole.BLOB_ROLE_INDEX,
  manifest: BlobRole.BLOB_ROLE_MANIFEST,
  config: BlobRole.BLOB_ROLE_CONFIG,
  layer: BlobRole.BLOB_ROLE_LAYER,
};

const noBytes = new Uint8Array(0);

/**
 * AgentService with a single-copy encoder for ReadBlob's messages (see grpc/wire.ts): every byte a source serves goes
 * through it. `data` is field 2 of ReadBlobResponse.
 */
const agentServiceDefinition: typeof AgentServiceService = {
  ...AgentServiceService,
  readBlob: {
    ...AgentServiceService.readBlob,
    responseSerialize: (value: ReadBlobResponse): Buffer =>
      appendBytesField(ReadBlobResponse.encode({ ...value, data: noBytes }).finish(), 2, value.data),
  },
};

export async function startAgentServer(options: AgentServerOptions): Promise<AgentServer> {
  const { containerd, nodeName } = options;
  const platform = options.platform ? normalizePlatform(options.platform) : hostPlatform();
  const metrics = createAgentMetrics(options.registry);
  const maxImageBytes = options.maxImageBytes ?? 2 * gib;
  const defaultParallelism = options.parallelism ?? 4;
  const leaseTtlMs = options.leaseTtlMs ?? 60 * 60_000;
  const contentDir =
    options.contentDir !== undefined ? await ContentDir.open(options.contentDir, leaseTtlMs) : undefined;
  const blobDeps: BlobServiceDeps = { nodeName, containerd, tokenPublicKey: options.tokenPublicKey, contentDir };
  const connectPeer =
    options.connectPeer ?? ((address: string, node: string) => connectSource(address, node, options.tls));
  const importing = new Map<string, AbortController>();
  const running = new Set<AbortController>();

  const peerOf = (call: { getAuthContext(): { sslPeerCertificate?: unknown } }): PeerIdentity | undefined =>
    identityFromCertificate(call.getAuthContext().sslPeerCertificate as { subjectaltname?: string } | undefined);

  const requireController = (peer: PeerIdentity | undefined, operation: string) => {
    if (peer?.kind !== 'controller') {
      throw new ToteError(
        'unauthorized',
        'NotController',
        `${operation} is for the controller, not ${describeIdentity(peer)}`,
      );
    }
  };

  const countError = (operation: string, err: unknown) => {
    const kind: ErrorKind = err instanceof ToteError ? err.kind : 'transient';
    metrics.errors.inc({ operation, kind });
  };

  const unary =
    <Req, Res>(operation: string, handler: (req: Req, peer: PeerIdentity | undefined) => Promise<Res>) =>
    (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      handler(call.request, peerOf(call)).then(
        (res) => callback(null, res),
        (err: unknown) => {
          countError(operation, err);
          callback(toStatus(err));
        },
      );
    };

  const service: UntypedServiceImplementation = {
    getNodeInfo: unary<pb.GetNodeInfoRequest, pb.GetNodeInfoResponse>('list', async (_req, peer) => {
      requireController(peer, 'GetNodeInfo');
      const [version, images] = await Promise.all([containerd.version(), listNodeImages(containerd, platform)]);
      return {
        nodeName,
        platform: toPbPlatform(platform),
        containerdVersion: version.version,
        layersDiscarded: images.some((i) => i.layersDiscarded),
        agentVersion,
      };
    }),

    listImages: unary<pb.ListImagesRequest, pb.ListImagesResponse>('list', async (req, peer) => {
      requireController(peer, 'ListImages');
      req.digests.forEach((d) => requireDigest(d));
      // Names (the controller resolving tags) add their records' digests to those asked.
      const named = await Promise.all(req.names.map((n) => containerd.images.get(recordNameFor(n))));
      const digests = [...new Set([...req.digests, ...named.flatMap((r) => (r ? [r.target.digest] : []))])];
      // Asked by name and none found is none; only a request naming nothing lists everything.
      if (digests.length === 0 && req.names.length > 0) return { images: [] };
      return { images: (await listNodeImages(containerd, platform, digests)).map(toPbImage) };
    }),

    resolveTag: unary<pb.ResolveTagRequest, pb.ResolveTagResponse>('list', async (req, peer) => {
      requireController(peer, 'ResolveTag');
      const name = recordNameFor(req.reference);
      const record = await containerd.images.get(name);
      if (record === undefined)
        throw new ToteError('not-found', 'ImageNotFound', `no image ${name} on node ${nodeName}`);
      const [image] = await listNodeImages(containerd, platform, [record.target.digest]);
      return { name, digest: record.target.digest, image: image ? toPbImage(image) : undefined };
    }),

    describePlan: unary<pb.DescribePlanRequest, pb.DescribePlanResponse>('describe_plan', async (req, peer) => {
      requireDigest(req.digest);
      if (peer?.kind !== 'controller') checkPeerToken(blobDeps, peer, req.token, req.digest);
      const [record] = await containerd.images.list([`target.digest==${req.digest}`]);
      if (record === undefined)
        throw new ToteError('not-found', 'ImageNotFound', `no image ${req.digest} on node ${nodeName}`);
      const want = fromPbPlatform(req.platform) ?? platform;
      const plan = await localPlan(containerd, rootOf(record), want);
      const missing = new Set(await missingBlobs(containerd, plan));
      if (missing.size > 0 && peer?.kind !== 'controller') {
        // A source that lacks blobs cannot serve the image (discard_unpacked_layers, loss): refuse up front.
        throw new ToteError(
          'terminal',
          'SourceIncomplete',
          `node ${nodeName} lacks ${missing.size} blobs of ${req.digest}`,
        );
      }
      return {
        digest: plan.root.digest,
        mediaType: plan.root.mediaType,
        platform: toPbPlatform(plan.platform),
        configDigest: plan.config.digest,
        blobs: plan.blobs.map((b) => ({
          digest: b.digest,
          size: b.size,
          mediaType: b.mediaType,
          role: roleOf[b.role],
          present: !missing.has(b.digest),
        })),
        totalSize: plan.totalSize,
        httpBlobs: true,
      };
    }),

    readBlob: (call: ServerWritableStream<pb.ReadBlobRequest, pb.ReadBlobResponse>) => {
      const abort = new AbortController();
      call.on('cancelled', () => abort.abort());
      const peer = peerOf(call);
      const serve = async () => {
        const { digest, token, offset } = call.request;
        const { body } = await openBlobForPeer(blobDeps, peer, { token, digest, offset }, abort.signal);
        // write() answers false (wait for 'drain') once two chunks wait behind the socket, not grpc-js's 16.
        limitBuffering(call, 'write', 2);
        let at = offset;
        for await (const data of body as AsyncIterable<Buffer>) {
          if (!call.write({ offset: at, data })) await once(call, 'drain', { signal: abort.signal });
          at += data.length;
          metrics.bytesSent.inc({ peer: peer?.kind === 'agent' ? peer.node : 'unknown' }, data.length);
        }
      };
      serve().then(
        () => call.end(),
        (err: unknown) => {
          if (abort.signal.aborted) return; // the peer went away: nobody to tell
          countError('read_blob', err);
          call.emit('error', toStatus(err));
        },
      );
    },

    import: (call: ServerWritableStream<pb.ImportRequest, pb.ImportResponse>) => {
      const abort = new AbortController();
      call.on('cancelled', () => abort.abort());
      const req = call.request;
      const started = process.hrtime.bigint();
      let peerClient: (BlobPeer & { close(): void }) | undefined;
      let claimed = false;
      const run = async () => {
        requireController(peerOf(call), 'Import');
        requireDigest(req.digest);
        if (req.sourceNode === '' || req.sourceAddress === '') {
          throw new ToteError('terminal', 'InvalidImport', 'Import needs source_node and source_address');
        }
        if (req.sourceNode === nodeName)
          throw new ToteError('terminal', 'InvalidImport', 'source and target are the same node');
        if (importing.has(req.digest)) {
          throw new ToteError(
            'transient',
            'ImportInProgress',
            `image ${req.digest} is already being imported on ${nodeName}`,
          );
        }
        importing.set(req.digest, abort);
        claimed = true;
        running.add(abort);
        metrics.activeTransfers.inc();
        peerClient = connectPeer(req.sourceAddress, req.sourceNode);
        return runImport(
          { containerd, source: peerClient, metrics, leaseTtlMs, contentDir },
          {
            digest: req.digest,
            token: req.token,
            sourceNode: req.sourceNode,
            names: req.names,
            platform: fromPbPlatform(req.platform) ?? platform,
            maxBytes: req.maxBytes > 0 ? Math.min(req.maxBytes, maxImageBytes) : maxImageBytes,
            parallelism: req.parallelism > 0 ? req.parallelism : defaultParallelism,
            bandwidthBytesPerSecond: req.bandwidthBytesPerSecond,
            pin: req.pin,
          },
          (p) => {
            if (!abort.signal.aborted) call.write(toPbProgress(p));
          },
          abort.signal,
        );
      };
      const finish = (result: string) => {
        if (claimed) {
          importing.delete(req.digest);
          running.delete(abort);
          metrics.activeTransfers.dec();
        }
        peerClient?.close();
        metrics.transferDuration.observe({ result }, Number(process.hrtime.bigint() - started) / 1e9);
      };
      run().then(
        (done) => {
          finish('success');
          call.write(toPbProgress(done));
          call.end();
        },
        (err: unknown) => {
          finish('error');
          countError('import', err);
          if (!abort.signal.aborted) call.emit('error', toStatus(err));
        },
      );
    },

    removeImage: unary<pb.RemoveImageRequest, pb.RemoveImageResponse>('remove', async (req, peer) => {
      requireController(peer, 'RemoveImage');
      requireDigest(req.digest);
      return removeImage(containerd, req.digest, req.verifyBlobs, platform);
    }),

    pushImage: (call: ServerWritableStream<pb.PushImageRequest, pb.PushImageResponse>) => {
      const abort = new AbortController();
      call.on('cancelled', () => abort.abort());
      const req = call.request;
      const run = async (): Promise<pb.PushImageResponse> => {
        requireController(peerOf(call), 'PushImage');
        requireDigest(req.digest);
        const [record] = await containerd.images.list([`target.digest==${req.digest}`]);
        if (record === undefined)
          throw new ToteError('not-found', 'ImageNotFound', `no image ${req.digest} on node ${nodeName}`);
        const root = rootOf(record);
        const client = new RegistryClient({
          credentials:
            req.username !== ''
              ? staticCredentials({ kind: 'basic', username: req.username, password: req.password })
              : undefined,
          ...(req.caPem !== '' ? { ca: req.caPem } : {}),
          insecureSkipVerify: req.insecure,
          plainHttp: req.plainHttp,
        });
        let pushed = 0;
        let skipped = 0;
        const result = await client.push(req.reference, root, blobSourceOver(containerd, abort.signal), {
          signal: abort.signal,
          onProgress: (e) => {
            if (e.type === 'blob') {
              if (e.outcome === 'uploaded') pushed += e.size;
              else skipped += e.size;
              if (!abort.signal.aborted)
                call.write({
                  bytesTotal: 0,
                  bytesPushed: pushed,
                  bytesSkipped: skipped,
                  done: false,
                  pushedReference: '',
                });
            }
          },
        });
        return {
          bytesTotal: result.bytesUploaded + result.bytesSkipped,
          bytesPushed: result.bytesUploaded,
          bytesSkipped: result.bytesSkipped,
          done: true,
          pushedReference: result.reference,
        };
      };
      run().then(
        (done) => {
          call.write(done);
          call.end();
        },
        (err: unknown) => {
          countError('push', err);
          if (!abort.signal.aborted) call.emit('error', toStatus(err));
        },
      );
    },
  };

  const health: UntypedServiceImplementation = {
    check: (
      call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>,
      callback: sendUnaryData<HealthCheckResponse>,
    ) => {
      const known = call.request.service === '' || call.request.service === 'tote.agent.v1.AgentService';
      if (!known) return callback({ code: Status.NOT_FOUND, details: `unknown service ${call.request.service}` });
      callback(null, { status: HealthCheckResponse_ServingStatus.SERVING });
    },
    watch: (call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) => {
      call.write({ status: HealthCheckResponse_ServingStatus.SERVING });
      // Stays open until the client leaves; the status never changes while the server runs.
    },
  };

  const server = new Server({
    'grpc.max_send_message_length': 16 * 1024 * 1024,
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    // No channelz service is served: do not pay for its bookkeeping per connection (see agentapi/client.ts).
    'grpc.enable_channelz': 0,
  });
  server.addService(agentServiceDefinition, service);
  server.addService(HealthService, health);
  const listener = await listenMultiplexed({
    listen: options.listen,
    tls: options.tls,
    grpc: server,
    http: blobEndpoint(blobDeps, metrics, countError),
  });
  const port = listener.port;
  const host = options.listen.slice(0, options.listen.lastIndexOf(':'));
  let healthServer: Server | undefined;
  let healthAddress: string | undefined;
  if (options.healthListen !== undefined) {
    healthServer = new Server();
    healthServer.addService(HealthService, health);
    const healthPort = await bind(healthServer, options.healthListen, ServerCredentials.createInsecure());
    healthAddress = `${options.healthListen.slice(0, options.healthListen.lastIndexOf(':'))}:${healthPort}`;
  }

  return {
    address: `${host}:${port}`,
    ...(healthAddress ? { healthAddress } : {}),
    ...(contentDir ? { contentDir: contentDir.root } : {}),
    metrics,
    stop: async () => {
      for (const a of running) a.abort();
      await Promise.all([
        listener.close(2_000),
        ...[server, healthServer].flatMap((s) =>
          s === undefined
            ? []
            : [
                new Promise<void>((resolve) => {
                  s.tryShutdown(() => resolve());
                  // Streams still open after a grace period are cut, and stop() returns then: grpc-js does not always
                  // call tryShutdown's callback once a stream was cut (seen as a test run that never ended).
                  setTimeout(() => {
                    s.forceShutdown();
                    resolve();
                  }, 2_000).unref();
                }),
              ],
        ),
      ]);
    },
  };
}

/** A source agent: its plan over gRPC, its blob bytes over HTTPS when it serves them (DescribePlan says so). */
function connectSource(address: string, node: string, tls: TlsMaterial): BlobPeer & { close(): void } {
  const grpc = connectAgent({ address, tls, server: { kind: 'agent', node } });
  const https = new HttpsBlobReader(address, tls, { kind: 'agent', node });
  let httpBlobs = false;
  return {
    describePlan: async (args, options) => {
      const plan = await grpc.describePlan(args, options);
      httpBlobs = plan.httpBlobs;
      return plan;
    },
    readBlob: (args, options) => (httpBlobs ? https.read(args, options) : grpc.readBlob(args, options)),
    close: () => {
      grpc.close();
      https.close();
    },
  };
}

function bind(server: Server, address: string, creds: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(address, creds, (err, port) =>
      err
        ? reject(
            new ToteError('terminal', 'ListenFailed', `cannot listen on ${address}: ${err.message}`, { cause: err }),
          )
        : resolve(port),
    ),
  );
}

/**
 * Removes a corrupt image: every record pointing at `digest` (the last delete waits for GC, which then collects the
 * blobs only this image used), then, when asked, hashes the image's remaining blobs and deletes those that do not
 * match (shared with another image, they would break it anyway).
 */
async function removeImage(
  containerd: Containerd,
  digest: string,
  verify: boolean,
  platform: Platform,
): Promise<pb.RemoveImageResponse> {
  const records = await containerd.images.list([`target.digest==${digest}`]);
  const candidates = new Set<string>([digest]);
  const first = records[0];
  if (first !== undefined) {
    try {
      const plan = await localPlan(containerd, rootOf(first), platform);
      for (const b of plan.blobs) candidates.add(b.digest);
    } catch (err) {
      if (!isToteError(err)) throw err; // a broken image may not even plan; its records go anyway
    }
  }
  const removedNames: string[] = [];
  for (const [i, r] of records.entries()) {
    await containerd.images.delete(r.name, { sync: i === records.length - 1 });
    removedNames.push(r.name);
  }
  const deletedBlobs: string[] = [];
  if (verify) {
    for (const d of candidates) {
      const info = await containerd.content.info(d);
      if (info === undefined) continue;
      const hash = createHash('sha256');
      for await (const part of containerd.content.read(d)) hash.update(part);
      if (`sha256:${hash.digest('hex')}` !== d) {
        await containerd.content.delete(d);
        deletedBlobs.push(d);
      }
    }
  }
  return { removedNames, deletedBlobs };
}
