// RPCs that act on an image already on this node, for the controller only: PushImage (to a backup registry by digest,
// index and manifests byte-identical; push.ts), RemoveImage (a corrupt image's records and, when asked, its blobs
// that no longer match their digests) and PinImage (against the kubelet's image GC; pins.ts).
import { createHash } from 'node:crypto';
import type { ServerWritableStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import type * as pb from '../../../generated/proto/tote/agent/v1/agent.ts';
import { isToteError, ToteError } from '../../api/errors.ts';
import { toStatus } from '../../agentapi/index.ts';
import type { Containerd } from '../../containerd/index.ts';
import { honoursPinLabel } from '../../containerd/index.ts';
import { pinImage } from '../pins.ts';
import { RegistryClient, staticCredentials } from '../../registry/index.ts';
import { requireDigest } from '../blob-service.ts';
import { localPlan, rootOf } from '../images.ts';
import type { Platform } from '../oci.ts';
import { blobSourceOver } from '../push.ts';
import { countError, peerOf, requireController, unary } from './state.ts';
import type { AgentState } from './state.ts';

export function pushRemoveHandlers(state: AgentState): UntypedServiceImplementation {
  const { containerd, nodeName, platform } = state;
  return {
    removeImage: unary<pb.RemoveImageRequest, pb.RemoveImageResponse>(state, 'remove', async (req, peer) => {
      requireController(peer, 'RemoveImage');
      requireDigest(req.digest);
      return removeImage(containerd, req.digest, req.verifyBlobs, platform);
    }),

    pinImage: unary<pb.PinImageRequest, pb.PinImageResponse>(state, 'pin', async (req, peer) => {
      requireController(peer, 'PinImage');
      requireDigest(req.digest);
      const [names, version] = await Promise.all([pinImage(containerd, req.digest, req.until), containerd.version()]);
      return { names, honoured: honoursPinLabel(version.version) };
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
                  pushedTag: '',
                  tagHeldBy: '',
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
          pushedTag: result.tag ?? '',
          tagHeldBy: result.tagConflict?.digest ?? '',
        };
      };
      run().then(
        (done) => {
          call.write(done);
          call.end();
        },
        (err: unknown) => {
          countError(state, 'push', err);
          if (!abort.signal.aborted) call.emit('error', toStatus(err));
        },
      );
    },
  };
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
