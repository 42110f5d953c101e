// Who is on the other end of an mTLS connection. tote's certificates name their holder in a URI subject alternative
// name, so identity never depends on an IP address or a DNS name (agents run on host networking and move):
//   urn:tote:controller         the controller
//   urn:tote:node:<node name>   the agent on that node
import type { PeerCertificate } from 'node:tls';

export type PeerIdentity = { readonly kind: 'controller' } | { readonly kind: 'agent'; readonly node: string };

export const controllerUri = 'urn:tote:controller';
const nodePrefix = 'urn:tote:node:';

/** The URI SAN a certificate for `identity` must carry. */
export function identityUri(identity: PeerIdentity): string {
  return identity.kind === 'controller' ? controllerUri : `${nodePrefix}${identity.node}`;
}

/**
 * The tote identity in a certificate's subject alternative names, or undefined when it carries none (or several
 * contradicting ones). Node prints SANs as `URI:urn:tote:node:a, DNS:x, IP Address:1.2.3.4`.
 */
export function identityFromCertificate(
  cert: Pick<PeerCertificate, 'subjectaltname'> | undefined,
): PeerIdentity | undefined {
  const sans = uriSans(cert?.subjectaltname);
  const found = new Set<string>();
  for (const uri of sans) {
    if (uri === controllerUri) found.add(uri);
    else if (uri.startsWith(nodePrefix) && uri.length > nodePrefix.length) found.add(uri);
  }
  if (found.size !== 1) return undefined;
  const [uri] = [...found];
  if (uri === controllerUri) return { kind: 'controller' };
  return { kind: 'agent', node: (uri ?? '').slice(nodePrefix.length) };
}

/** The URI entries of a subject-alternative-name string as Node prints it (`URI:a, DNS:b`). */
export const uriSans = (subjectAltName: string | undefined): string[] =>
  (subjectAltName ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice('URI:'.length));

export const describeIdentity = (identity: PeerIdentity | undefined): string =>
  identity === undefined
    ? 'an unidentified peer'
    : identity.kind === 'controller'
      ? 'the controller'
      : `node ${identity.node}`;
