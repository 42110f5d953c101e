// The agent's certificate request is DER written by hand (src/agentapi/certificate-request.ts, ADR 0005): two
// independent parsers must read it as the request it claims to be, signed by the key the agent keeps.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { describe, it } from 'node:test';
import { certificateFacts, createAgentCertificateRequest } from '../../../src/agentapi/index.ts';
import { issueCertificate, readCertificateRequest } from '../../../src/controller/agents/pki.ts';
import { selfSignedP256 } from '../../support/self-signed.ts';

/** `openssl req` on a PEM request, from stdin: its text form, after it checked the self-signature. */
async function openssl(requestPem: string, ...args: string[]): Promise<string> {
  const child = execFile('openssl', ['req', '-noout', ...args]);
  const out: string[] = [];
  child.stdout?.on('data', (d: Buffer) => out.push(d.toString()));
  child.stderr?.on('data', (d: Buffer) => out.push(d.toString()));
  child.stdin?.end(requestPem);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return `${out.join('')}exit ${code}`;
}

describe('the agent certificate request', () => {
  it('@peculiar/x509, as the signer uses it, reads one ECDSA P-256 request naming only the node', async () => {
    const { requestPem } = createAgentCertificateRequest('node-a');
    assert.deepEqual(await readCertificateRequest(requestPem), {
      uris: ['urn:tote:node:node-a'],
      otherNames: [],
      keyAlgorithm: 'ECDSA P-256',
    });
  });

  it('openssl verifies its self-signature and reads the subject and the URI', async () => {
    const { requestPem } = createAgentCertificateRequest('node-a');
    const text = await openssl(requestPem, '-verify', '-text');
    assert.match(text, /verify OK/);
    assert.match(text, /Subject: O\s*=\s*tote, CN\s*=\s*tote-agent node-a/);
    assert.match(text, /X509v3 Subject Alternative Name:\s*\n\s*URI:urn:tote:node:node-a\s*\n/);
    assert.match(text, /exit 0$/);
  });

  it('is signed by the key it returns, and that key is in it', async () => {
    const { requestPem, keyPem } = createAgentCertificateRequest('node-a');
    const fromRequest = (await openssl(requestPem, '-pubkey')).replace(/exit 0$/, '');
    const fromKey = createPublicKey(keyPem).export({ type: 'spki', format: 'pem' }).toString();
    assert.equal(fromRequest.trim(), fromKey.trim());
  });

  it('a longest node name (253 characters: long-form DER lengths) still reads and verifies', async () => {
    const node = `${'n'.repeat(63)}.${'o'.repeat(63)}.${'d'.repeat(63)}.${'e'.repeat(61)}`;
    assert.equal(node.length, 253);
    const { requestPem } = createAgentCertificateRequest(node);
    assert.deepEqual((await readCertificateRequest(requestPem)).uris, [`urn:tote:node:${node}`]);
    assert.match(await openssl(requestPem, '-verify'), /verify OK/);
  });

  it('one byte changed in the node name breaks the signature, and the signer refuses it', async () => {
    const { requestPem } = createAgentCertificateRequest('node-a');
    const der = Buffer.from(requestPem.replace(/-----[^-]+-----/g, '').replace(/\s/g, ''), 'base64');
    const at = der.indexOf('urn:tote:node:node-a') + 'urn:tote:node:node-'.length;
    der[at] = 'b'.charCodeAt(0);
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await assert.rejects(readCertificateRequest(tampered), /not signed by the key it carries/);
    assert.doesNotMatch(await openssl(tampered, '-verify'), /verify OK/);
  });

  it('the signer issues a certificate for it naming the node, which the agent reads back', async () => {
    const authority = selfSignedP256('test-ca', 'basicConstraints=critical,CA:TRUE');
    const { requestPem } = createAgentCertificateRequest('node-a');
    const now = new Date();
    const pem = await issueCertificate({
      authority,
      requestPem,
      uri: 'urn:tote:node:node-a',
      now,
      lifetimeSeconds: 600,
    });
    const facts = certificateFacts(pem);
    assert.deepEqual(facts.uris, ['urn:tote:node:node-a']);
    assert.equal(facts.notAfter.getTime() - facts.notBefore.getTime(), 660_000);
  });
});
