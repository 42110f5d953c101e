// Serving a blob to a peer agent, for both transports (gRPC ReadBlob and HTTP GET /v1/blobs): who may read what, and
// where the bytes come from. A peer must be an agent presenting a transfer token bound to this node as source, itself
// as target and an image; only that image's blobs are served, from an offset inside the blob.
//
// Bytes come straight from the blob file when the content store is mounted (content-dir.ts), else through containerd's
// content API. Either way the reader is a stream with backpressure: nothing buffers more than a chunk or two.
import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { KeyObject } from 'node:crypto';
import { ToteError } from '../api/errors.ts';
import { describeIdentity, verifyTransferToken } from '../agentapi/index.ts';
import type { PeerIdentity, TransferClaims } from '../agentapi/index.ts';
import type { Containerd } from '../containerd/index.ts';
import type { ContentDir } from './content-dir.ts';
import { imageClosure } from './images.ts';

export interface BlobServiceDeps {
  readonly nodeName: string;
  readonly containerd: Containerd;
  readonly tokenPublicKey: string | KeyObject;
  readonly contentDir?: ContentDir | undefined;
}

const digestPattern = /^sha256:[a-f0-9]{64}$/;

/** Refuses anything but sha256:<64 hex> (which also rules out path traversal through a digest). */
export function requireDigest(digest: string, what = 'digest'): string {
  if (!digestPattern.test(digest))
    throw new ToteError('terminal', 'InvalidDigest', `${what} ${JSON.stringify(digest)} is not sha256:<64 hex>`);
  return digest;
}

/** An agent peer's token for `digest` (when known), bound to this node as source and the peer as target. */
export function checkPeerToken(
  deps: BlobServiceDeps,
  peer: PeerIdentity | undefined,
  token: string,
  digest?: string,
): TransferClaims {
  if (peer?.kind !== 'agent')
    throw new ToteError('unauthorized', 'NotAnAgent', `blob reads are for agents, not ${describeIdentity(peer)}`);
  return verifyTransferToken(deps.tokenPublicKey, token, { digest, source: deps.nodeName, target: peer.node });
}

/**
 * Where an opened blob's bytes come from: its file in the content directory (sent with reused buffers,
 * file-sender.ts), or containerd's content API as a stream.
 */
export type BlobSource = { readonly file: FileHandle } | { readonly stream: Readable };

/** Authorises a read of `digest` from `offset` and opens it: the blob's size and where its bytes come from. */
export async function openBlobForPeer(
  deps: BlobServiceDeps,
  peer: PeerIdentity | undefined,
  request: { token: string; digest: string; offset: number },
  signal: AbortSignal,
): Promise<{ size: number; source: BlobSource }> {
  const { digest, offset } = request;
  requireDigest(digest);
  const claims = checkPeerToken(deps, peer, request.token);
  // The token names an image: only that image's blobs may be read with it.
  if (!(await imageClosure(deps.containerd, claims.digest)).has(digest)) {
    throw new ToteError('unauthorized', 'BlobNotInImage', `blob ${digest} is not part of image ${claims.digest}`);
  }
  const info = await deps.containerd.content.info(digest, { signal });
  if (info === undefined)
    throw new ToteError('not-found', 'BlobNotFound', `blob ${digest} is not on node ${deps.nodeName}`);
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > info.size)
    throw new ToteError('terminal', 'OffsetOutOfRange', `offset ${offset} outside ${digest} (${info.size} bytes)`);
  const file = await deps.contentDir?.openBlob(digest, info.size);
  if (file) return { size: info.size, source: { file } };
  const stream = Readable.from(deps.containerd.content.read(digest, offset, { signal }), { objectMode: false });
  signal.addEventListener('abort', () => stream.destroy(), { once: true });
  return { size: info.size, source: { stream } };
}

/** The blob's bytes from `offset` as a stream, whatever their source (for callers that consume a stream). */
export function blobStream(source: BlobSource, offset: number): Readable {
  // 1 MiB reads: fewer, larger chunks to frame and send.
  return 'file' in source
    ? createReadStream('', { fd: source.file, start: offset, highWaterMark: 1 << 20 })
    : source.stream;
}
