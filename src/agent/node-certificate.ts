// The agent's own identity, without any file a cluster admin has to make per node: the agent makes a key pair that
// never leaves this process, asks tote's signer (the controller, signerName tote.dev/agent) for a certificate naming
// its node through a CertificateSigningRequest, and renews it after two thirds of its life with a fresh key, without
// a restart. The controller signs only a request made with a token the kubelet bound to this node (see
// src/controller/agents/certificate-signer.ts), so no other node can obtain this identity.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { V1CertificateSigningRequest } from '@kubernetes/client-node';
import { Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import { errorMessage } from '../api/index.ts';
import { agentSignerName, certificateFacts, createAgentCertificateRequest, identityUri } from '../agentapi/index.ts';
import type { RenewableTls, TlsMaterial } from '../agentapi/index.ts';
import { delay } from '../runtime/clock.ts';
import type { Clock, TimerHandle } from '../runtime/clock.ts';
import { resources } from '../runtime/kube.ts';
import type { KubeClient } from '../runtime/kube.ts';
import type { Logger } from '../runtime/logging.ts';

export interface NodeCertificateOptions {
  kube: KubeClient;
  node: string;
  /** The CA bundle peers chain to; an issued certificate that does not chain to it is refused. */
  ca: Buffer;
  /** Validity asked for; the signer may grant less. */
  lifetimeMs: number;
  clock: Clock;
  log: Logger;
  registry?: Registry;
  /** Interval between reads of a pending request. Default 500 ms. */
  pollMs?: number;
  /** How long one request may wait for the signer before a new one is made. Default 2 min. */
  requestTimeoutMs?: number;
}

/** Why a request ended without a certificate; the signer's reason when it denied it. */
export class CertificateNotIssued extends Error {}

export class NodeCertificate {
  readonly #options: NodeCertificateOptions;
  readonly #uri: string;
  readonly #expiry: Gauge | undefined;
  #renewal: TimerHandle | undefined;
  #stopped = false;

  constructor(options: NodeCertificateOptions) {
    this.#options = options;
    this.#uri = identityUri({ kind: 'agent', node: options.node });
    this.#expiry = options.registry
      ? new Gauge({
          name: 'tote_agent_certificate_expiry_timestamp_seconds',
          help: "When the agent's current certificate expires (Unix seconds); renewed after two thirds of its life.",
          registers: [options.registry],
        })
      : undefined;
  }

  /** One request, start to finish: a new key, a CertificateSigningRequest, the signed certificate, checked. */
  async request(): Promise<TlsMaterial> {
    const { kube, node, lifetimeMs } = this.#options;
    const { requestPem, keyPem } = createAgentCertificateRequest(node);
    const created = await kube.create<V1CertificateSigningRequest>(resources.certificateSigningRequests, {
      apiVersion: 'certificates.k8s.io/v1',
      kind: 'CertificateSigningRequest',
      metadata: { generateName: `tote-agent-${node}-`.slice(0, 200) },
      spec: {
        request: Buffer.from(requestPem).toString('base64'),
        signerName: agentSignerName,
        expirationSeconds: Math.floor(lifetimeMs / 1000),
        usages: ['digital signature', 'server auth', 'client auth'],
      },
    });
    const name = created.metadata?.name ?? '';
    const certificate = await this.#awaitCertificate(name);
    const material = { ca: this.#options.ca, cert: certificate, key: Buffer.from(keyPem) };
    this.#check(name, material);
    return material;
  }

  /** Requests until one succeeds or `signal` aborts, 5 s to 5 min apart: the controller may not run yet. */
  async obtain(signal: AbortSignal): Promise<TlsMaterial> {
    for (let attempt = 0; ; attempt++) {
      try {
        const material = await this.request();
        this.#issued(material);
        return material;
      } catch (err) {
        const waitMs = Math.min(5_000 * 2 ** attempt, 300_000);
        this.#options.log.warn('no certificate yet; asking again', { error: errorMessage(err), retryInMs: waitMs });
        await delay(this.#options.clock, waitMs, signal);
      }
    }
  }

  /** Keeps `tls` renewed: after two thirds of the current certificate's life, then retried until it succeeds. */
  keepRenewed(tls: RenewableTls): { stop(): void } {
    const schedule = (material: TlsMaterial) => {
      const { notBefore, notAfter } = certificateFacts(material.cert);
      const renewAt = notBefore.getTime() + ((notAfter.getTime() - notBefore.getTime()) * 2) / 3;
      this.#arm(tls, Math.max(0, renewAt - this.#options.clock.now()), 0);
    };
    schedule(tls.current);
    const stopListening = tls.onReplace(schedule);
    return {
      stop: () => {
        this.#stopped = true;
        stopListening();
        if (this.#renewal !== undefined) this.#options.clock.clearTimeout(this.#renewal);
      },
    };
  }

  #arm(tls: RenewableTls, inMs: number, failures: number): void {
    if (this.#renewal !== undefined) this.#options.clock.clearTimeout(this.#renewal);
    this.#renewal = this.#options.clock.setTimeout(() => void this.#renew(tls, failures), inMs);
  }

  async #renew(tls: RenewableTls, failures: number): Promise<void> {
    if (this.#stopped) return;
    try {
      const material = await this.request();
      if (this.#stopped) return;
      this.#issued(material);
      tls.replace(material); // re-arms through onReplace
    } catch (err) {
      const expired = certificateFacts(tls.current.cert).notAfter.getTime() <= this.#options.clock.now();
      const retryInMs = Math.min(10_000 * 2 ** failures, 300_000);
      const fields = { error: errorMessage(err), retryInMs };
      if (expired) this.#options.log.error('certificate expired and renewal failed; peers refuse this agent', fields);
      else this.#options.log.warn('certificate renewal failed; the current one stays until it expires', fields);
      if (!this.#stopped) this.#arm(tls, retryInMs, failures + 1);
    }
  }

  #issued(material: TlsMaterial): void {
    const { notAfter } = certificateFacts(material.cert);
    this.#expiry?.set(notAfter.getTime() / 1000);
    this.#options.log.info('certificate issued', { identity: this.#uri, notAfter: notAfter.toISOString() });
  }

  /** Polls the request until the signer issued, denied or failed it, or the timeout passes. */
  async #awaitCertificate(name: string): Promise<Buffer> {
    const { kube, clock } = this.#options;
    const deadline = clock.now() + (this.#options.requestTimeoutMs ?? 120_000);
    for (;;) {
      const csr = await kube.get<V1CertificateSigningRequest>(resources.certificateSigningRequests, name);
      const refusal = csr.status?.conditions?.find(
        (c) => (c.type === 'Denied' || c.type === 'Failed') && c.status === 'True',
      );
      if (refusal) throw new CertificateNotIssued(`${name}: ${refusal.type} (${refusal.reason}): ${refusal.message}`);
      if (csr.status?.certificate) return Buffer.from(csr.status.certificate, 'base64');
      if (clock.now() >= deadline)
        throw new CertificateNotIssued(`${name}: not signed in time (is the controller running?)`);
      await delay(clock, this.#options.pollMs ?? 500);
    }
  }

  /** An issued certificate is used only if it is for our key, names this node and nothing else, and chains to the CA. */
  #check(name: string, material: TlsMaterial): void {
    const cert = new X509Certificate(material.cert);
    const refuse = (why: string) => {
      throw new CertificateNotIssued(`${name}: issued certificate refused: ${why}`);
    };
    if (!cert.checkPrivateKey(createPrivateKey(material.key))) refuse('it is not for the key this agent made');
    const uris = certificateFacts(material.cert).uris;
    if (uris.length !== 1 || uris[0] !== this.#uri) refuse(`it names ${uris.join(', ') || 'no URI'}, not ${this.#uri}`);
    if (!caCertificates(material.ca).some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey)))
      refuse('it does not chain to the CA bundle (--tls-ca-file)');
  }
}

/** Every certificate in a PEM bundle. */
function caCertificates(bundle: Buffer): X509Certificate[] {
  const blocks = bundle.toString().match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((block) => new X509Certificate(block));
}
