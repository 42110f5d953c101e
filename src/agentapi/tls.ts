// mTLS credentials for the agent API: TLS 1.3 only, client certificates required and checked against tote's CA, and
// the server identified by its certificate's tote identity (URI SAN) instead of a hostname.
import { createSecureContext } from 'node:tls';
import type { ConnectionOptions, PeerCertificate, TlsOptions } from 'node:tls';
import { credentials, ServerCredentials } from '@grpc/grpc-js';
import type { ChannelCredentials } from '@grpc/grpc-js';
import type { SecureServerOptions } from 'node:http2';
import { describeIdentity, identityFromCertificate, identityUri } from './identity.ts';
import type { PeerIdentity } from './identity.ts';

/** PEM material of one component: its key, its certificate (chain) and the CA that signs every tote certificate. */
export interface TlsMaterial {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

/**
 * grpc-js' ServerCredentials.createSsl has no way to pin the protocol version; a subclass passes Node's own TLS server
 * options (minVersion) through the documented constructor.
 */
class Tls13ServerCredentials extends ServerCredentials {
  constructor(material: TlsMaterial) {
    const options: SecureServerOptions = {
      minVersion: 'TLSv1.3',
      requestCert: true,
      rejectUnauthorized: true,
    };
    super(options, { ca: material.ca, cert: material.cert, key: material.key, minVersion: 'TLSv1.3' });
  }

  _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}

/** Server credentials: TLS 1.3, a client certificate signed by `ca` required. */
export function serverCredentials(material: TlsMaterial): ServerCredentials {
  return new Tls13ServerCredentials(material);
}

/**
 * Node TLS server options for the agent's one port, which carries gRPC (ALPN h2) and blob reads (HTTP/1.1): TLS 1.3,
 * a client certificate signed by `ca` required.
 */
export function tlsServerOptions(material: TlsMaterial): TlsOptions {
  return {
    ca: material.ca,
    cert: material.cert,
    key: material.key,
    minVersion: 'TLSv1.3',
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: ['h2', 'http/1.1'],
  };
}

/**
 * Node TLS client options (for HTTPS) that accept only a server whose certificate (signed by `ca`) names `expected`.
 */
export function tlsClientOptions(material: TlsMaterial, expected: PeerIdentity): ConnectionOptions {
  return { secureContext: secureContextOf(material), checkServerIdentity: serverIdentityCheck(expected) };
}

/**
 * Client credentials that accept only a server whose certificate (signed by `ca`) names `expected`. The hostname
 * in the address is not checked: agents are dialled by pod IP.
 */
export function clientCredentials(material: TlsMaterial, expected: PeerIdentity): ChannelCredentials {
  return credentials.createFromSecureContext(secureContextOf(material), {
    checkServerIdentity: serverIdentityCheck(expected),
  });
}

/**
 * One OpenSSL context per TlsMaterial object, shared by every channel made with it: the controller talks to hundreds
 * of agents, and each context holds its own parsed CA, certificate and key (~64 KB of native memory, and the parsing
 * on every connect). The identity check stays per channel.
 */
const contexts = new WeakMap<TlsMaterial, ReturnType<typeof createSecureContext>>();
function secureContextOf(material: TlsMaterial): ReturnType<typeof createSecureContext> {
  let context = contexts.get(material);
  if (context === undefined) {
    context = createSecureContext({ ca: material.ca, cert: material.cert, key: material.key, minVersion: 'TLSv1.3' });
    contexts.set(material, context);
  }
  return context;
}

const serverIdentityCheck =
  (expected: PeerIdentity) =>
  (_host: string, cert: PeerCertificate): Error | undefined => {
    const actual = identityFromCertificate(cert);
    if (actual === undefined || identityUri(actual) !== identityUri(expected)) {
      return new Error(`server certificate names ${describeIdentity(actual)}, expected ${describeIdentity(expected)}`);
    }
    return undefined;
  };

/**
 * The TLS material a process presents now. Certificates are short-lived and renewed while the process runs: a renewal
 * replaces the material here, listeners swap their secure context, and every connection opened afterwards takes the
 * new one (connections already open keep theirs until they close).
 */
export class RenewableTls {
  #current: TlsMaterial;
  readonly #listeners = new Set<(material: TlsMaterial) => void>();

  constructor(initial: TlsMaterial) {
    this.#current = initial;
  }

  get current(): TlsMaterial {
    return this.#current;
  }

  replace(material: TlsMaterial): void {
    this.#current = material;
    for (const listener of this.#listeners) listener(material);
  }

  /** Calls `listener` on every replacement; returns the function that stops it. */
  onReplace(listener: (material: TlsMaterial) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
