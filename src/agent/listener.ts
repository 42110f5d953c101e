// The agent's one mTLS port. TLS 1.3 with a client certificate is terminated here; the negotiated ALPN protocol then
// picks the handler: `h2` goes to the gRPC server (tote.agent.v1 and grpc.health.v1), `http/1.1` to the blob
// endpoint (agentapi/blob-http.ts). One port keeps Services, NetworkPolicies and certificates as they were, and a
// peer that speaks only gRPC still works.
import { createServer as createHttpServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { ServerCredentials } from '@grpc/grpc-js';
import type { Server as GrpcServer } from '@grpc/grpc-js';
import { ToteError } from '../api/errors.ts';
import { tlsServerOptions } from '../agentapi/index.ts';
import type { RenewableTls } from '../agentapi/index.ts';

export interface Listener {
  readonly port: number;
  /** Stops accepting; open gRPC sessions get `graceMs` to finish, then every connection is cut. */
  close(graceMs: number): Promise<void>;
}

export async function listenMultiplexed(options: {
  listen: string;
  /** Its renewals take effect for new connections without a restart. */
  tls: RenewableTls;
  grpc: GrpcServer;
  http: {
    request(req: IncomingMessage, res: ServerResponse): void;
    upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  };
}): Promise<Listener> {
  // The TLS layer is ours, so grpc-js sees already-decrypted connections; it still reads the peer certificate from
  // the TLS socket underneath (call.getAuthContext()).
  const grpc = options.grpc.createConnectionInjector(ServerCredentials.createInsecure());
  const http = createHttpServer({ keepAliveTimeout: 30_000 }, (req, res) => options.http.request(req, res));
  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => options.http.upgrade(req, socket, head));
  const sockets = new Set<TLSSocket>();
  const tls = createTlsServer(tlsServerOptions(options.tls.current), (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    if (socket.alpnProtocol === 'h2') grpc.injectConnection(socket);
    else http.emit('connection', socket);
  });
  // A failed handshake (no certificate, another CA) is the client's problem; the connection is simply closed.
  tls.on('tlsClientError', () => undefined);
  const stopRenewals = options.tls.onReplace((material) => tls.setSecureContext(tlsServerOptions(material)));
  const colon = options.listen.lastIndexOf(':');
  const host = options.listen.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(options.listen.slice(colon + 1));
  await new Promise<void>((resolve, reject) => {
    tls.once('error', (err) =>
      reject(
        new ToteError('terminal', 'ListenFailed', `cannot listen on ${options.listen}: ${err.message}`, { cause: err }),
      ),
    );
    tls.listen(port, host, () => resolve());
  });
  const address = tls.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : port,
    close: async (graceMs) => {
      stopRenewals();
      const closed = new Promise<void>((resolve) => tls.close(() => resolve()));
      grpc.drain(graceMs);
      http.closeIdleConnections();
      await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, graceMs).unref())]);
      // Whatever is still open after the grace period is cut.
      for (const s of sockets) s.destroy();
      grpc.destroy();
    },
  };
}
