// Inventory RPCs, for the controller only: what this node is (GetNodeInfo), which images it holds and how complete
// they are (ListImages), and which digest a tag's record points at (ResolveTag).
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type * as pb from '../../../generated/proto/tote/agent/v1/agent.ts';
import { ToteError } from '../../api/errors.ts';
import { honoursPinLabel } from '../../containerd/index.ts';
import { recordNameFor } from '../../registry/index.ts';
import { requireDigest } from '../blob-service.ts';
import { listNodeImages } from '../images.ts';
import { toPbImage, toPbPlatform } from './pb.ts';
import { requireController, unary } from './state.ts';
import type { AgentState } from './state.ts';

export const agentVersion = '0.1.0';

export function inventoryHandlers(state: AgentState): UntypedServiceImplementation {
  const { containerd, nodeName, platform } = state;
  return {
    getNodeInfo: unary<pb.GetNodeInfoRequest, pb.GetNodeInfoResponse>(state, 'list', async (_req, peer) => {
      requireController(peer, 'GetNodeInfo');
      const [version, images] = await Promise.all([containerd.version(), listNodeImages(containerd, platform)]);
      return {
        nodeName,
        platform: toPbPlatform(platform),
        containerdVersion: version.version,
        layersDiscarded: images.some((i) => i.layersDiscarded),
        agentVersion,
        pinsHonoured: honoursPinLabel(version.version),
      };
    }),

    listImages: unary<pb.ListImagesRequest, pb.ListImagesResponse>(state, 'list', async (req, peer) => {
      requireController(peer, 'ListImages');
      req.digests.forEach((d) => requireDigest(d));
      // Names (the controller resolving tags) add their records' digests to those asked.
      const named = await Promise.all(req.names.map((n) => containerd.images.get(recordNameFor(n))));
      const digests = [...new Set([...req.digests, ...named.flatMap((r) => (r ? [r.target.digest] : []))])];
      // Asked by name and none found is none; only a request naming nothing lists everything.
      if (digests.length === 0 && req.names.length > 0) return { images: [] };
      return { images: (await listNodeImages(containerd, platform, digests)).map(toPbImage) };
    }),

    resolveTag: unary<pb.ResolveTagRequest, pb.ResolveTagResponse>(state, 'list', async (req, peer) => {
      requireController(peer, 'ResolveTag');
      const name = recordNameFor(req.reference);
      const record = await containerd.images.get(name);
      if (record === undefined)
        throw new ToteError('not-found', 'ImageNotFound', `no image ${name} on node ${nodeName}`);
      const [image] = await listNodeImages(containerd, platform, [record.target.digest]);
      return { name, digest: record.target.digest, image: image ? toPbImage(image) : undefined };
    }),
  };
}
