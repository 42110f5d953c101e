// The registry client's ImageSource over containerd's content store, so PushImage streams blobs from the node
// straight to the backup registry, and indexes and manifests go out byte for byte as stored (same digests).
import { ToteError } from '../api/errors.ts';
import type { Containerd } from '../containerd/index.ts';
import type { ImageSource } from '../registry/index.ts';
import { maxDocumentBytes } from './oci.ts';

export function blobSourceOver(containerd: Containerd, signal?: AbortSignal): ImageSource {
  return {
    size: async (digest) => {
      const info = await containerd.content.info(digest, { signal });
      if (info === undefined) throw new ToteError('not-found', 'BlobNotFound', `blob ${digest} is not on this node`);
      return info.size;
    },
    open: (digest, offset = 0) => containerd.content.read(digest, offset, { signal }),
    manifest: async (digest) => {
      const info = await containerd.content.info(digest, { signal });
      if (info === undefined) return undefined;
      return containerd.content.readAll(digest, maxDocumentBytes, { signal });
    },
  };
}
