// Plan and blob RPCs, for the controller and for peer agents holding a transfer token: DescribePlan (which blobs an
// image is on this node, refused up front when some are missing) and ReadBlob (a blob's bytes over gRPC; peers that
// can use the HTTPS blob endpoint, blob-endpoint.ts, read there instead).
//
// ReadBlob streams respect HTTP/2 flow control: the handler waits for 'drain' before reading more from containerd, so
// memory per stream stays bounded.
import { once } from 'node:events';
import type { ServerWritableStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { AgentServiceService, ReadBlobResponse } from '../../../generated/proto/tote/agent/v1/agent.ts';
import type * as pb from '../../../generated/proto/tote/agent/v1/agent.ts';
import { ToteError } from '../../api/errors.ts';
import { toStatus } from '../../agentapi/index.ts';
import { appendBytesField, limitBuffering } from '../../grpc/wire.ts';
import { blobStream, checkPeerToken, openBlobForPeer, requireDigest } from '../blob-service.ts';
import { heldImagePlan } from '../images.ts';
import { fromPbPlatform, roleOf, toPbPlatform } from './pb.ts';
import { countError, peerOf, unary } from './state.ts';
import type { AgentState } from './state.ts';

const noBytes = new Uint8Array(0);

/**
 * AgentService with a single-copy encoder for ReadBlob's messages (see grpc/wire.ts): every byte a source serves goes
 * through it. `data` is field 2 of ReadBlobResponse.
 */
export const agentServiceDefinition: typeof AgentServiceService = {
  ...AgentServiceService,
  readBlob: {
    ...AgentServiceService.readBlob,
    responseSerialize: (value: ReadBlobResponse): Buffer =>
      appendBytesField(ReadBlobResponse.encode({ ...value, data: noBytes }).finish(), 2, value.data),
  },
};

export function blobHandlers(state: AgentState): UntypedServiceImplementation {
  const { containerd, nodeName, platform, metrics } = state;
  return {
    describePlan: unary<pb.DescribePlanRequest, pb.DescribePlanResponse>(state, 'describe_plan', async (req, peer) => {
      requireDigest(req.digest);
      if (peer?.kind !== 'controller') checkPeerToken(state.blobs, peer, req.token, req.digest);
      const want = fromPbPlatform(req.platform) ?? platform;
      const { plan, missing } = await heldImagePlan(containerd, nodeName, req.digest, want);
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
        const { source } = await openBlobForPeer(state.blobs, peer, { token, digest, offset }, abort.signal);
        const body = blobStream(source, offset);
        abort.signal.addEventListener('abort', () => body.destroy(), { once: true });
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
          countError(state, 'read_blob', err);
          call.emit('error', toStatus(err));
        },
      );
    },
  };
}
