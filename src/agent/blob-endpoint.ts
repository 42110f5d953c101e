// The HTTP/1.1 side of the agent's port: GET /v1/blobs/<digest> for peer agents (protocol in agentapi/blob-http.ts).
// Agents ask for the `tote-blob/1` upgrade and get the raw bytes on the TLS stream; a plain GET gets an ordinary
// response. Both stream with backpressure: a slow target slows the file reads, nothing piles up here. A blob file is
// sent through reused buffers (file-sender.ts); the content API's stream is piped.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { TLSSocket } from 'node:tls';
import { ToteError } from '../api/errors.ts';
import {
  blobLengthHeader,
  blobPathPrefix,
  blobProtocol,
  httpError,
  identityFromCertificate,
  parseRangeOffset,
} from '../agentapi/index.ts';
import { openBlobForPeer } from './blob-service.ts';
import { sendFileRange } from './file-sender.ts';
import type { BlobServiceDeps } from './blob-service.ts';
import type { AgentMetrics } from './metrics.ts';

export interface BlobEndpoint {
  request(req: IncomingMessage, res: ServerResponse): void;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
}

export function blobEndpoint(
  deps: BlobServiceDeps,
  metrics: AgentMetrics,
  countError: (operation: string, err: unknown) => void,
): BlobEndpoint {
  /** Authorises and opens the blob a request names; `send` writes it to the response and counts the bytes sent. */
  const open = async (req: IncomingMessage, signal: AbortSignal) => {
    const url = req.url ?? '';
    if (req.method !== 'GET' || !url.startsWith(blobPathPrefix)) {
      throw new ToteError(
        'not-found',
        'NoSuchEndpoint',
        `${req.method} ${url.slice(0, 100)}: only GET ${blobPathPrefix}<digest>`,
      );
    }
    const peer = identityFromCertificate((req.socket as TLSSocket).getPeerCertificate());
    const auth = req.headers.authorization ?? '';
    const token = auth.startsWith('Bearer ') ? auth.slice('Bearer '.length) : '';
    // Not percent-decoded: a digest never needs escaping, so anything escaped is simply not a digest.
    const digest = url.slice(blobPathPrefix.length);
    const offset = parseRangeOffset(req.headers.range);
    const { size, source } = await openBlobForPeer(deps, peer, { token, digest, offset }, signal);
    const sent = metrics.bytesSent.labels({ peer: peer?.kind === 'agent' ? peer.node : 'unknown' });
    const send = async (out: Writable): Promise<void> => {
      if ('file' in source) {
        await sendFileRange(source.file, { from: offset, to: size }, out, signal, (bytes) => sent.inc(bytes));
        return;
      }
      source.stream.on('data', (chunk: Buffer) => sent.inc(chunk.length));
      await pipeline(source.stream, out);
    };
    return { size, offset, send };
  };

  return {
    request(req, res) {
      const abort = new AbortController();
      res.on('close', () => abort.abort());
      const serve = async () => {
        const { size, send, offset } = await open(req, abort.signal);
        res.writeHead(offset > 0 ? 206 : 200, {
          'content-type': 'application/octet-stream',
          'content-length': size - offset,
          ...(offset > 0 && offset < size ? { 'content-range': `bytes ${offset}-${size - 1}/${size}` } : {}),
        });
        await send(res);
      };
      serve().catch((err: unknown) => {
        if (abort.signal.aborted && !res.headersSent) return; // the peer went away: nobody to tell
        countError('read_blob', err);
        if (res.headersSent) {
          res.destroy(); // mid-stream: the target sees a cut stream and resumes
          return;
        }
        const { status, headers, body } = httpError(err);
        res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(body) });
        res.end(body);
      });
    },

    upgrade(req, socket, head) {
      const abort = new AbortController();
      socket.on('close', () => abort.abort());
      let upgraded = false;
      const serve = async () => {
        if (req.headers.upgrade !== blobProtocol) {
          throw new ToteError('terminal', 'UnknownUpgrade', `only the ${blobProtocol} upgrade is offered`);
        }
        if (head.length > 0) throw new ToteError('terminal', 'UnexpectedBody', 'a blob request carries no body');
        const { size, send, offset } = await open(req, abort.signal);
        socket.write(
          `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${blobProtocol}\r\n` +
            `${blobLengthHeader}: ${size - offset}\r\n\r\n`,
        );
        upgraded = true;
        await send(socket);
      };
      serve().catch((err: unknown) => {
        if (abort.signal.aborted && !upgraded) return;
        countError('read_blob', err);
        if (upgraded) {
          socket.destroy(); // mid-stream: the target sees a cut stream and resumes
          return;
        }
        const { status, headers, body } = httpError(err);
        const lines = Object.entries({ ...headers, 'content-length': String(Buffer.byteLength(body)) })
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join('');
        socket.end(`HTTP/1.1 ${status} Refused\r\nconnection: close\r\n${lines}\r\n${body}`);
      });
    },
  };
}
