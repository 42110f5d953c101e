// The node agent's server: tote.agent.v1.AgentService and grpc.health.v1.Health over mTLS (TLS 1.3), blob reads for
// peer agents over HTTP/1.1 on the same port (listener.ts), plus an optional plaintext health-only listener for
// kubelet probes (which cannot present a client certificate).
//
// This file only wires: the handlers live in rpc/ by concern (inventory, plan and blobs, import, push and remove,
// health) around one AgentState (rpc/state.ts), built here from the options.
//
// Concurrency: handlers run concurrently on Node's event loop; rpc/import.ts serialises imports per image digest and
// rpc/blobs.ts keeps ReadBlob streams within HTTP/2 flow control.
import type { KeyObject } from 'node:crypto';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { HealthService } from '../../generated/proto/grpc/health/v1/health.ts';
import { ToteError } from '../api/errors.ts';
import type { Containerd } from '../containerd/index.ts';
import { agentMaxMessageBytes } from '../agentapi/index.ts';
import type { RenewableTls } from '../agentapi/index.ts';
import { defaultMaxImageBytes } from '../runtime/config/index.ts';
import { blobEndpoint } from './blob-endpoint.ts';
import { collectUnadoptedBlobs } from './unadopted-blobs.ts';
import { ContentDir } from './content-dir.ts';
import { listenMultiplexed } from './listener.ts';
import { createAgentMetrics } from './metrics.ts';
import type { AgentMetrics } from './metrics.ts';
import { hostPlatform, normalizePlatform } from './oci.ts';
import type { Platform } from './oci.ts';
import type { BlobPeer } from './transfer.ts';
import { agentServiceDefinition, blobHandlers } from './rpc/blobs.ts';
import { healthHandlers } from './rpc/health.ts';
import { connectSource, importHandlers } from './rpc/import.ts';
import { inventoryHandlers } from './rpc/inventory.ts';
import { pushRemoveHandlers } from './rpc/push-remove.ts';
import { countError } from './rpc/state.ts';
import { sweepLapsedPins } from './pins.ts';
import type { AgentState } from './rpc/state.ts';

export { agentVersion } from './rpc/inventory.ts';

export interface AgentServerOptions {
  /** This node's name, as in its certificate (urn:tote:node:<name>) and in transfer tokens. */
  readonly nodeName: string;
  readonly containerd: Containerd;
  readonly tls: RenewableTls;
  /** The controller's Ed25519 public key (PEM or KeyObject) that signs transfer tokens. */
  readonly tokenPublicKey: string | KeyObject;
  /** host:port to listen on for the mTLS API; port 0 picks a free one. */
  readonly listen: string;
  /** Optional host:port for a plaintext health-only server (kubelet gRPC probes). */
  readonly healthListen?: string;
  readonly registry: Registry;
  /** Default: the platform this process runs on. */
  readonly platform?: Platform;
  /** Plans larger than this are refused unless an Import asks for less; default defaultMaxImageBytes (2 GiB). */
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
  /** How often staging files older than the lease lifetime are swept; default a tenth of that lifetime. */
  readonly stagingSweepMs?: number;
  /** How often pins tote set and nobody renewed are removed (pins.ts); default 1 min. */
  readonly pinSweepMs?: number;
  /** Told once when the content directory stops being used (not containerd's, or a disk error), with why. */
  readonly onContentDirDisabled?: (reason: string) => void;
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

export async function startAgentServer(options: AgentServerOptions): Promise<AgentServer> {
  const state = await agentState(options);
  const server = new Server({
    'grpc.max_send_message_length': agentMaxMessageBytes,
    'grpc.max_receive_message_length': agentMaxMessageBytes,
    // No channelz service is served: do not pay for its bookkeeping per connection (see agentapi/client.ts).
    'grpc.enable_channelz': 0,
  });
  server.addService(agentServiceDefinition, {
    ...inventoryHandlers(state),
    ...blobHandlers(state),
    ...importHandlers(state),
    ...pushRemoveHandlers(state),
  });
  server.addService(HealthService, healthHandlers);
  const listener = await listenMultiplexed({
    listen: options.listen,
    tls: options.tls,
    grpc: server,
    http: blobEndpoint(state.blobs, state.metrics, (operation, err) => countError(state, operation, err)),
  });
  const port = listener.port;
  const host = options.listen.slice(0, options.listen.lastIndexOf(':'));
  const sweeper = state.contentDir?.sweepStaging(state.leaseTtlMs, options.stagingSweepMs ?? state.leaseTtlMs / 10);
  const pinSweeper = sweepPinsEvery(state, options.pinSweepMs ?? 60_000);
  let healthServer: Server | undefined;
  let healthAddress: string | undefined;
  if (options.healthListen !== undefined) {
    healthServer = new Server();
    healthServer.addService(HealthService, healthHandlers);
    const healthPort = await bind(healthServer, options.healthListen, ServerCredentials.createInsecure());
    healthAddress = `${options.healthListen.slice(0, options.healthListen.lastIndexOf(':'))}:${healthPort}`;
  }

  return {
    address: `${host}:${port}`,
    ...(healthAddress ? { healthAddress } : {}),
    ...(state.contentDir ? { contentDir: state.contentDir.root } : {}),
    metrics: state.metrics,
    stop: async () => {
      sweeper?.stop();
      clearInterval(pinSweeper);
      for (const a of state.running) a.abort();
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

/** The agent's state from its options, with the defaults filled in. */
async function agentState(options: AgentServerOptions): Promise<AgentState> {
  const { containerd, nodeName } = options;
  const leaseTtlMs = options.leaseTtlMs ?? 60 * 60_000;
  const contentDir =
    options.contentDir !== undefined
      ? await ContentDir.open(options.contentDir, leaseTtlMs, options.onContentDirDisabled)
      : undefined;
  const metrics = createAgentMetrics(options.registry);
  // Blob files an earlier run placed but containerd never adopted go now, before any import can be placing one.
  if (contentDir?.writable)
    await collectUnadoptedBlobs(containerd).catch(() => metrics.errors.inc({ operation: 'sweep', kind: 'transient' }));
  return {
    nodeName,
    containerd,
    platform: options.platform ? normalizePlatform(options.platform) : hostPlatform(),
    metrics,
    blobs: { nodeName, containerd, tokenPublicKey: options.tokenPublicKey, contentDir },
    contentDir,
    maxImageBytes: options.maxImageBytes ?? defaultMaxImageBytes,
    defaultParallelism: options.parallelism ?? 4,
    leaseTtlMs,
    connectPeer: options.connectPeer ?? ((address, node) => connectSource(address, node, options.tls.current)),
    importing: new Map(),
    running: new Set(),
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

/** Removes lapsed pins on a timer; a failed sweep is counted like any failed operation and tried again next time. */
function sweepPinsEvery(state: AgentState, everyMs: number): ReturnType<typeof setInterval> {
  const timer = setInterval(() => {
    sweepLapsedPins(state.containerd, Math.floor(Date.now() / 1000)).catch((err: unknown) =>
      countError(state, 'pin', err),
    );
  }, everyMs);
  timer.unref();
  return timer;
}
