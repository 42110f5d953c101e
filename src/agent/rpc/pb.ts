// The agent API's messages from and to the agent's own types (generated/proto/tote/agent/v1/agent.ts).
import { BlobRole, ImportPhase } from '../../../generated/proto/tote/agent/v1/agent.ts';
import type * as pb from '../../../generated/proto/tote/agent/v1/agent.ts';
import type { NodeImage } from '../images.ts';
import { normalizePlatform } from '../oci.ts';
import type { Platform } from '../oci.ts';
import type { ImportProgress } from '../transfer.ts';

export const toPbPlatform = (p: Platform): pb.Platform => ({
  os: p.os,
  architecture: p.architecture,
  variant: p.variant ?? '',
});
export const fromPbPlatform = (p: pb.Platform | undefined): Platform | undefined =>
  p === undefined || (p.os === '' && p.architecture === '')
    ? undefined
    : normalizePlatform({ os: p.os, architecture: p.architecture, ...(p.variant ? { variant: p.variant } : {}) });

export const toPbImage = (i: NodeImage): pb.Image => ({
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
  pinnedUntil: i.pinnedUntil,
});

const phaseOf: Record<ImportProgress['phase'], ImportPhase> = {
  planning: ImportPhase.IMPORT_PHASE_PLANNING,
  transferring: ImportPhase.IMPORT_PHASE_TRANSFERRING,
  recording: ImportPhase.IMPORT_PHASE_RECORDING,
  completed: ImportPhase.IMPORT_PHASE_COMPLETED,
};

export const toPbProgress = (p: ImportProgress): pb.ImportResponse => ({
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

export const roleOf = {
  index: BlobRole.BLOB_ROLE_INDEX,
  manifest: BlobRole.BLOB_ROLE_MANIFEST,
  config: BlobRole.BLOB_ROLE_CONFIG,
  layer: BlobRole.BLOB_ROLE_LAYER,
};
