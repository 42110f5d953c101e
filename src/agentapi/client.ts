// A typed, promise-shaped client of one node's agent (tote.agent.v1.AgentService), used by the controller and by
// agents fetching from a peer. Every call has a deadline; every failure is a ToteError of the kind the agent sent.
//
// Concurrency: one client holds one gRPC channel (HTTP/2 connection) to one agent; calls may run in parallel.
import { Metadata } from '@grpc/grpc-js';
import type {
  CallOptions as GrpcCallOptions,
  ClientReadableStream,
  ClientUnaryCall,
  ServiceError,
} from '@grpc/grpc-js';
import { AgentServiceClient, ImportRequest, PushImageRequest } from '../../generated/proto/tote/agent/v1/agent.ts';
import type {
  DescribePlanResponse,
  GetNodeInfoResponse,
  Image,
  ImportResponse,
  Platform,
  PushImageResponse,
  PinImageResponse,
  RemoveImageResponse,
  ResolveTagResponse,
} from '../../generated/proto/tote/agent/v1/agent.ts';
import { ToteError } from '../api/errors.ts';
import { limitBuffering } from '../grpc/wire.ts';
import { fromAgentError } from './errors.ts';
import { clientCredentials } from './tls.ts';
import type { TlsMaterial } from './tls.ts';
import type { PeerIdentity } from './identity.ts';

/** A platform as OCI writes it; `variant` may be omitted. */
export interface PlatformSpec {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

const toPbPlatform = (p: PlatformSpec | undefined): Platform | undefined =>
  p === undefined ? undefined : { os: p.os, architecture: p.architecture, variant: p.variant ?? '' };

export interface AgentCallOptions {
  /** Milliseconds until the call's deadline (defaults per method). */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface StreamCallOptions<Progress> extends AgentCallOptions {
  /** Called with each progress message (not for the last one, which the promise resolves to). Must not throw. */
  readonly onProgress?: (progress: Progress) => void;
}

export interface AgentClientOptions {
  /** host:port of the agent (its pod IP on host networking). */
  readonly address: string;
  /** This component's certificate, key and tote's CA. */
  readonly tls: TlsMaterial;
  /** Whom the server's certificate must name: the agent of this node (or, in tests, any identity). */
  readonly server: PeerIdentity;
  /** Default deadline of unary calls; default 30 s. */
  readonly timeoutMs?: number;
}

/** Everything Import needs; optional fields default on the agent (see proto/tote/agent/v1/agent.proto). */
export interface ImportArgs {
  readonly digest: string;
  readonly sourceAddress: string;
  readonly sourceNode: string;
  /** From signTransferToken, bound to (digest, sourceNode, this agent's node). */
  readonly token: string;
  readonly names?: readonly string[];
  readonly platform?: PlatformSpec;
  readonly maxBytes?: number;
  readonly bandwidthBytesPerSecond?: number;
  readonly parallelism?: number;
  readonly pin?: boolean;
  readonly transferId?: string;
}

export interface PushArgs {
  readonly digest: string;
  readonly reference: string;
  readonly username?: string;
  readonly password?: string;
  readonly caPem?: string;
  readonly insecure?: boolean;
  readonly plainHttp?: boolean;
}

export interface AgentClient {
  readonly address: string;
  getNodeInfo(options?: AgentCallOptions): Promise<GetNodeInfoResponse>;
  /** Images by target digest; `digests` narrows the answer. */
  listImages(digests?: readonly string[], options?: AgentCallOptions): Promise<Image[]>;
  /**
   * The images records named by these references point at (ListImages by names): many tags resolved in one call, a
   * tag with no record absent. An agent that predates names answers with every image, which still answers.
   */
  findImages(references: readonly string[], options?: AgentCallOptions): Promise<Image[]>;
  /** @throws ToteError `not-found` when the node has no record for the reference. */
  resolveTag(reference: string, options?: AgentCallOptions): Promise<ResolveTagResponse>;
  describePlan(
    args: { digest: string; platform?: PlatformSpec; token?: string },
    options?: AgentCallOptions,
  ): Promise<DescribePlanResponse>;
  /** Streams one blob from `offset`. Default deadline 1 h. */
  readBlob(
    args: { token: string; digest: string; offset?: number },
    options?: AgentCallOptions,
  ): AsyncIterable<Uint8Array>;
  /**
   * Asks this (target) agent to import `digest` from the source agent. Resolves to the COMPLETED progress message.
   * Idempotent and resumable: after any failure, call again; blobs already present or partly written are not moved
   * again. Default deadline 1 h.
   */
  import(args: ImportArgs, options?: StreamCallOptions<ImportResponse>): Promise<ImportResponse>;
  removeImage(
    args: { digest: string; verifyBlobs?: boolean },
    options?: AgentCallOptions,
  ): Promise<RemoveImageResponse>;
  /** Pins the image's records until `until` (a Date), or removes tote's pins with `until` undefined. */
  pinImage(args: { digest: string; until?: Date }, options?: AgentCallOptions): Promise<PinImageResponse>;
  /** Default deadline 1 h. */
  pushImage(args: PushArgs, options?: StreamCallOptions<PushImageResponse>): Promise<PushImageResponse>;
  close(): void;
}

const defaultUnaryTimeoutMs = 30_000;
const defaultStreamTimeoutMs = 60 * 60_000;
/** The agent API's message limit, both sides: blob chunks are ≤ 1 MiB; image lists can be large on big nodes. */
export const agentMaxMessageBytes = 16 * 1024 * 1024;
/** 4 MiB: as fast as 8 MiB in bench-transfer, less memory per blob stream (docs/agent.md). */
const flowControlWindowBytes = 4 * 1024 * 1024;

type Callback<Res> = (err: ServiceError | null, res: Res) => void;
type UnaryFn<Req, Res> = (req: Req, md: Metadata, opts: Partial<GrpcCallOptions>, cb: Callback<Res>) => ClientUnaryCall;

export function connectAgent(options: AgentClientOptions): AgentClient {
  const client = new AgentServiceClient(options.address, clientCredentials(options.tls, options.server), {
    'grpc.max_receive_message_length': agentMaxMessageBytes,
    'grpc.max_send_message_length': agentMaxMessageBytes,
    // Agents are dialled by IP, and an IP is not a valid TLS server name (RFC 6066): send a fixed one. The server's
    // identity is checked from its certificate's URI SAN (tls.ts), not from this name.
    'grpc.ssl_target_name_override': 'tote-agent',
    // HTTP/2's default 64 KiB receive window caps a blob stream at one window per round trip: open it wide.
    'grpc-node.flow_control_window': flowControlWindowBytes,
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    // Channelz (on by default) registers every channel, subchannel and socket and traces their events: memory per
    // channel for a debugging service tote does not serve, on a controller that dials hundreds of agents.
    'grpc.enable_channelz': 0,
  });
  const unaryTimeout = options.timeoutMs ?? defaultUnaryTimeoutMs;
  const deadline = (o: AgentCallOptions | undefined, fallback: number) => ({
    deadline: new Date(Date.now() + (o?.timeoutMs ?? fallback)),
  });

  const unary = <Req, Res>(operation: string, fn: UnaryFn<Req, Res>, req: Req, o?: AgentCallOptions): Promise<Res> =>
    new Promise<Res>((resolve, reject) => {
      if (o?.signal?.aborted) return reject(new ToteError('transient', 'Cancelled', `agent ${operation}: cancelled`));
      const onAbort = () => call.cancel();
      const call = fn(req, new Metadata(), deadline(o, unaryTimeout), (err, res) => {
        o?.signal?.removeEventListener('abort', onAbort);
        if (err) reject(fromAgentError(err, operation));
        else resolve(res);
      });
      o?.signal?.addEventListener('abort', onAbort, { once: true });
    });

  /** Drains a server stream, reporting every message and resolving to the last. */
  const lastOf = async <Res>(operation: string, call: ClientReadableStream<Res>, o?: StreamCallOptions<Res>) => {
    const onAbort = () => call.cancel();
    o?.signal?.addEventListener('abort', onAbort, { once: true });
    let last: Res | undefined;
    try {
      for await (const msg of call as AsyncIterable<Res>) {
        if (last !== undefined) o?.onProgress?.(last);
        last = msg;
      }
    } catch (err) {
      throw fromAgentError(err, operation);
    } finally {
      o?.signal?.removeEventListener('abort', onAbort);
    }
    if (last === undefined) throw new ToteError('transient', 'EmptyStream', `agent ${operation}: no answer`);
    return last;
  };

  return {
    address: options.address,
    getNodeInfo: (o) => unary('GetNodeInfo', client.getNodeInfo.bind(client), {}, o),
    listImages: async (digests = [], o) =>
      (await unary('ListImages', client.listImages.bind(client), { digests: [...digests], names: [] }, o)).images,
    findImages: async (references, o) =>
      (await unary('ListImages', client.listImages.bind(client), { digests: [], names: [...references] }, o)).images,
    resolveTag: (reference, o) => unary(`ResolveTag ${reference}`, client.resolveTag.bind(client), { reference }, o),
    describePlan: (args, o) =>
      unary(
        `DescribePlan ${args.digest}`,
        client.describePlan.bind(client),
        { digest: args.digest, platform: toPbPlatform(args.platform), token: args.token ?? '' },
        o,
      ),
    readBlob: (args, o) => ({
      async *[Symbol.asyncIterator]() {
        const call = client.readBlob(
          { token: args.token, digest: args.digest, offset: args.offset ?? 0 },
          new Metadata(),
          deadline(o, defaultStreamTimeoutMs),
        );
        // Two chunks decoded ahead of the reader, not grpc-js's 16: the HTTP/2 window keeps the connection busy.
        limitBuffering(call, 'read', 2);
        const onAbort = () => call.cancel();
        o?.signal?.addEventListener('abort', onAbort, { once: true });
        try {
          for await (const msg of call as AsyncIterable<{ data: Buffer }>) yield msg.data;
        } catch (err) {
          throw fromAgentError(err, `ReadBlob ${args.digest}@${args.offset ?? 0}`);
        } finally {
          o?.signal?.removeEventListener('abort', onAbort);
          call.cancel();
        }
      },
    }),
    import: (args, o) => {
      const req = ImportRequest.fromPartial({
        ...args,
        platform: toPbPlatform(args.platform),
        names: [...(args.names ?? [])],
      });
      const call = client.import(req, new Metadata(), deadline(o, defaultStreamTimeoutMs));
      return lastOf(`Import ${args.digest}`, call, o);
    },
    removeImage: (args, o) =>
      unary(
        `RemoveImage ${args.digest}`,
        client.removeImage.bind(client),
        { digest: args.digest, verifyBlobs: args.verifyBlobs ?? false },
        o,
      ),
    pinImage: (args, o) =>
      unary(
        `PinImage ${args.digest}`,
        client.pinImage.bind(client),
        { digest: args.digest, until: args.until ? Math.floor(args.until.getTime() / 1000) : 0 },
        o,
      ),
    pushImage: (args, o) => {
      const call = client.pushImage(
        PushImageRequest.fromPartial(args),
        new Metadata(),
        deadline(o, defaultStreamTimeoutMs),
      );
      return lastOf(`PushImage ${args.digest}`, call, o);
    },
    close: () => client.close(),
  };
}
