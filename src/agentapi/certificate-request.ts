// The agent's half of tote's PKI (docs/security.md, "Agent identities"): a key pair that never leaves the node and a
// PKCS#10 request for `urn:tote:node:<node>`, which the controller, tote's signer, checks and answers with a short-lived
// certificate (src/controller/agents/pki.ts).
//
// The request is encoded here, in a few lines of DER, rather than with @peculiar/x509 as the controller does
// (docs/adr/0005-x509-library.md, "The agent's request"): that library and its ASN.1 schemas cost 12.5 MB of resident
// memory once loaded, and the agent, paid for on every node, needs exactly one fixed structure from it. The controller
// parses and verifies every request with the library, and the tests check the encoding with it and with openssl.
import { X509Certificate, generateKeyPairSync, sign } from 'node:crypto';
import { identityUri, uriSans } from './identity.ts';

/** The signerName of agent certificates in CertificateSigningRequests. */
export const agentSignerName = 'tote.dev/agent';

/** A fresh ECDSA P-256 key pair and a PKCS#10 request, signed with it, for `urn:tote:node:<node>`. */
export function createAgentCertificateRequest(node: string): { requestPem: string; keyPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const info = sequence(
    integerZero,
    sequence(
      set(sequence(oid(oids.organization), utf8('tote'))),
      set(sequence(oid(oids.commonName), utf8(`tote-agent ${node}`.slice(0, 64)))),
    ),
    publicKey.export({ type: 'spki', format: 'der' }),
    // attributes [0]: one extensionRequest carrying the subject alternative name, the identity asked for
    tagged(
      0xa0,
      sequence(oid(oids.extensionRequest), set(sequence(subjectAltName(identityUri({ kind: 'agent', node }))))),
    ),
  );
  const signature = sign('sha256', info, { key: privateKey, dsaEncoding: 'der' });
  const request = sequence(info, sequence(oid(oids.ecdsaWithSha256)), bitString(signature));
  return {
    requestPem: pemBlock('CERTIFICATE REQUEST', request),
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

/** A certificate's validity window and its identity URIs, from node:crypto's parser. */
export function certificateFacts(pem: string | Buffer): { notBefore: Date; notAfter: Date; uris: string[] } {
  const cert = new X509Certificate(pem);
  const uris = uriSans(cert.subjectAltName);
  return { notBefore: new Date(cert.validFrom), notAfter: new Date(cert.validTo), uris };
}

// --- DER: just the types one request uses (X.690; every length definite, every value short enough) -------------------

const oids = {
  organization: '2.5.4.10',
  commonName: '2.5.4.3',
  extensionRequest: '1.2.840.113549.1.9.14',
  subjectAltName: '2.5.29.17',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
};

function tagged(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  const n = body.length;
  // Short form below 128; long form with the fewest length bytes otherwise.
  const length = n < 0x80 ? Buffer.of(n) : n < 0x100 ? Buffer.of(0x81, n) : Buffer.of(0x82, (n >> 8) & 0xff, n & 0xff);
  if (n > 0xffff) throw new Error(`DER value of ${n} bytes: a certificate request is never that large`);
  return Buffer.concat([Buffer.of(tag), length, body]);
}

const sequence = (...items: Buffer[]) => tagged(0x30, ...items);
const set = (...items: Buffer[]) => tagged(0x31, ...items);
const utf8 = (text: string) => tagged(0x0c, Buffer.from(text, 'utf8'));
const integerZero = Buffer.of(0x02, 0x01, 0x00);
/** A BIT STRING of whole bytes: no unused bits. */
const bitString = (bytes: Buffer) => tagged(0x03, Buffer.of(0), bytes);

function oid(dotted: string): Buffer {
  const [first = 0, second = 0, ...rest] = dotted.split('.').map(Number);
  const bytes = [40 * first + second];
  for (const arc of rest) {
    // Base 128, most significant group first, the high bit set on every byte but the last.
    const groups = [arc & 0x7f];
    for (let v = arc >>> 7; v > 0; v >>>= 7) groups.unshift((v & 0x7f) | 0x80);
    bytes.push(...groups);
  }
  return tagged(0x06, Buffer.from(bytes));
}

/** Extension { extnID subjectAltName, extnValue OCTET STRING (GeneralNames { uniformResourceIdentifier [6] uri }) }. */
function subjectAltName(uri: string): Buffer {
  const generalNames = sequence(tagged(0x86, Buffer.from(uri, 'ascii')));
  return sequence(oid(oids.subjectAltName), tagged(0x04, generalNames));
}

function pemBlock(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
