// The Import RPC, for the controller only: this node pulls an image from a source agent (transfer.ts), streaming its
// progress back.
//
// Concurrency: imports are serialised per image digest (a second Import of a digest already importing is refused as
// transient, to be retried), so two transfers never write the same ingests; different digests import in parallel,
// each with its own lease.
import type { ServerWritableStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import type * as pb from '../../../generated/proto/tote/agent/v1/agent.ts';
import { ToteError } from '../../api/errors.ts';
import { connectAgent, HttpsBlobReader, toStatus } from '../../agentapi/index.ts';
import type { TlsMaterial } from '../../agentapi/index.ts';
import { requireDigest } from '../blob-service.ts';
import { ownCopy } from '../own-copy.ts';
import { runImport } from '../transfer.ts';
import type { BlobPeer } from '../transfer.ts';
import { fromPbPlatform, toPbProgress } from './pb.ts';
import { countError, peerOf, requireController } from './state.ts';
import type { AgentState } from './state.ts';

export function importHandlers(state: AgentState): UntypedServiceImplementation {
  const { containerd, nodeName, platform, metrics, importing, running } = state;
  return {
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
        // This node as the source: it holds the whole image under other names; the import only writes the records.
        peerClient =
          req.sourceNode === nodeName
            ? ownCopy(containerd, nodeName, platform)
            : state.connectPeer(req.sourceAddress, req.sourceNode);
        return runImport(
          { containerd, source: peerClient, metrics, leaseTtlMs: state.leaseTtlMs, contentDir: state.contentDir },
          {
            digest: req.digest,
            token: req.token,
            sourceNode: req.sourceNode,
            names: req.names,
            platform: fromPbPlatform(req.platform) ?? platform,
            maxBytes: req.maxBytes > 0 ? Math.min(req.maxBytes, state.maxImageBytes) : state.maxImageBytes,
            parallelism: req.parallelism > 0 ? req.parallelism : state.defaultParallelism,
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
          countError(state, 'import', err);
          if (!abort.signal.aborted) call.emit('error', toStatus(err));
        },
      );
    },
  };
}

/** A source agent: its plan over gRPC, its blob bytes over HTTPS when it serves them (DescribePlan says so). */
export function connectSource(address: string, node: string, tls: TlsMaterial): BlobPeer & { close(): void } {
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
