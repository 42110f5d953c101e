// The source of an import whose source is this very node: it holds the whole image already, only not under the names a
// pod asks for (an image imported or pulled under another name, or by an older tote that wrote the id record only).
// The import then moves nothing and writes the records; a blob found missing here means the copy is not whole after
// all, which the controller's completeness check should have caught, and fails the import instead of asking a peer.
import { ToteError } from '../api/errors.ts';
import type { Containerd } from '../containerd/index.ts';
import { heldImagePlan } from './images.ts';
import type { Platform } from './oci.ts';
import type { BlobPeer } from './transfer.ts';

export function ownCopy(containerd: Containerd, nodeName: string, platform: Platform): BlobPeer & { close(): void } {
  return {
    describePlan: async ({ digest, platform: wanted }) => {
      const { plan, missing } = await heldImagePlan(containerd, nodeName, digest, wanted ?? platform);
      if (missing.size > 0)
        throw new ToteError(
          'terminal',
          'SourceIncomplete',
          `node ${nodeName} lacks ${missing.size} blobs of ${digest}`,
        );
      return {
        digest: plan.root.digest,
        mediaType: plan.root.mediaType,
        totalSize: plan.totalSize,
        blobs: plan.blobs.map((b) => ({ digest: b.digest, size: b.size, mediaType: b.mediaType })),
      };
    },
    readBlob: (args) => {
      throw new ToteError('integrity', 'OwnCopyIncomplete', `node ${nodeName} lost ${args.digest} during the import`);
    },
    close: () => undefined,
  };
}
