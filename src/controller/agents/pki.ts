// The signer's half of tote's PKI for agent identities (docs/security.md, "Agent identities"): an agent asks for a
// certificate through a Kubernetes CertificateSigningRequest (src/agentapi/certificate-request.ts); the controller,
// tote's signer, reads and checks the request and issues a short-lived certificate naming exactly that node.
//
// PKCS#10 parsing and X.509 encoding come from @peculiar/x509 (docs/adr/0005-x509-library.md): node:crypto parses
// certificates but can neither read a request nor issue a certificate. Keys and signatures stay in WebCrypto
// (node:crypto). Only the controller loads this module.
import 'reflect-metadata';
import { createPrivateKey, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto);

const subjectAltNameOid = '2.5.29.17';
type KeyAlgorithm = { name: string; namedCurve?: string; modulusLength?: number };

/** What a request asks for, once its self-signature is checked; tote's signer decides on this, never on raw bytes. */
export interface CertificateRequestContents {
  /** URI subject alternative names, in order. */
  readonly uris: readonly string[];
  /** Any other SAN (DNS, IP, email, …) as "type:value": tote issues none, so any makes the request refused. */
  readonly otherNames: readonly string[];
  /** "ECDSA P-256", "RSA 2048", … */
  readonly keyAlgorithm: string;
}

/** Parses a PEM PKCS#10 request and checks its self-signature; throws with the reason when it is not one. */
export async function readCertificateRequest(pem: string): Promise<CertificateRequestContents> {
  let request: x509.Pkcs10CertificateRequest;
  try {
    request = new x509.Pkcs10CertificateRequest(pem);
  } catch (err) {
    throw new Error(`not a PKCS#10 certificate request: ${(err as Error).message}`, { cause: err });
  }
  if (!(await request.verify())) throw new Error('the request is not signed by the key it carries');
  const extension = request.getExtension(subjectAltNameOid);
  const names = extension ? new x509.SubjectAlternativeNameExtension(extension.rawData).names.items : [];
  return {
    uris: names.filter((n) => n.type === 'url').map((n) => n.value),
    otherNames: names.filter((n) => n.type !== 'url').map((n) => `${n.type}:${n.value}`),
    keyAlgorithm: describeKeyAlgorithm(request.publicKey.algorithm),
  };
}

function describeKeyAlgorithm(algorithm: KeyAlgorithm): string {
  if (algorithm.namedCurve) return `${algorithm.name} ${algorithm.namedCurve}`;
  if (algorithm.modulusLength) return `${algorithm.name} ${algorithm.modulusLength}`;
  return algorithm.name;
}

/** The CA that signs agent certificates: its certificate and private key (PEM), as in a kubernetes.io/tls Secret. */
export interface SigningAuthority {
  readonly certPem: string;
  readonly keyPem: string;
}

/**
 * Issues a certificate for the request's key naming only `uri`: serverAuth and clientAuth (an agent is both), no CA
 * rights, valid from a minute ago (clock skew between nodes) for `lifetimeSeconds`. The request's own extensions are
 * not copied: the signer decides what the certificate says.
 */
export async function issueCertificate(options: {
  authority: SigningAuthority;
  requestPem: string;
  uri: string;
  now: Date;
  lifetimeSeconds: number;
}): Promise<string> {
  const request = new x509.Pkcs10CertificateRequest(options.requestPem);
  const caCert = new x509.X509Certificate(options.authority.certPem);
  const caKey = await importSigningKey(options.authority.keyPem, caCert);
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: request.subject,
    issuer: caCert.subject,
    notBefore: new Date(options.now.getTime() - 60_000),
    notAfter: new Date(options.now.getTime() + options.lifetimeSeconds * 1000),
    publicKey: request.publicKey,
    signingKey: caKey,
    signingAlgorithm: signingAlgorithmOf(caCert),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: options.uri }], true),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return certificate.toString('pem');
}

/** The CA's key as a WebCrypto signing key, in the algorithm its certificate names (ECDSA P-256/P-384 or RSA). */
async function importSigningKey(keyPem: string, caCert: x509.X509Certificate): Promise<webcrypto.CryptoKey> {
  // openssl and cert-manager write SEC1 ("EC PRIVATE KEY") or PKCS#8; node:crypto reads both and gives PKCS#8.
  const der = createPrivateKey(keyPem).export({ format: 'der', type: 'pkcs8' });
  return webcrypto.subtle.importKey('pkcs8', der, signingAlgorithmOf(caCert), false, ['sign']);
}

function signingAlgorithmOf(caCert: x509.X509Certificate): { name: string; namedCurve?: string; hash: string } {
  const algorithm = caCert.publicKey.algorithm as KeyAlgorithm;
  if (algorithm.name === 'ECDSA' && algorithm.namedCurve)
    return {
      name: 'ECDSA',
      namedCurve: algorithm.namedCurve,
      hash: algorithm.namedCurve === 'P-384' ? 'SHA-384' : 'SHA-256',
    };
  if (algorithm.name === 'RSASSA-PKCS1-v1_5') return { name: algorithm.name, hash: 'SHA-256' };
  throw new Error(`the signing CA's key is ${algorithm.name}: tote signs with ECDSA or RSA CAs only`);
}

/** 16 random bytes, high bit clear: a positive serial that no two certificates share. */
function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return Buffer.from(bytes).toString('hex');
}
