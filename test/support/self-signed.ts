// A fresh self-signed ECDSA P-256 certificate and its key, made by openssl (an independent implementation of what
// tote's own PKI code writes and reads): a CA for the signer's tests, a peer's pair for the TLS ones.
import { execFileSync } from 'node:child_process';

export function selfSignedP256(commonName: string, ...extensions: string[]): { certPem: string; keyPem: string } {
  const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1'];
  for (const extension of extensions) args.push('-addext', extension);
  const out = execFileSync('openssl', [...args, '-subj', `/CN=${commonName}`, '-keyout', '-'], { encoding: 'utf8' });
  const block = (label: string) =>
    new RegExp(`-----BEGIN ${label}-----[^-]+-----END ${label}-----\\n`).exec(out)?.[0] ?? '';
  return { certPem: block('CERTIFICATE'), keyPem: block('PRIVATE KEY') };
}
