// tote's signer, tote.dev/agent: the leader watches CertificateSigningRequests for this signer, approves those
// certificate-review.ts accepts, issues a short-lived certificate for each with the CA key (Secret tote-ca), and denies
// the rest with the reason. kube-controller-manager signs only kubernetes.io/* signers, so nobody else issues these.
//
// One request at a time, in a queue of its own: requests are rare (an agent's start, then one renewal per two thirds
// of a certificate's life), and each is checked against the API server's current pod, not a cache.
import type {
  KubernetesObject,
  V1CertificateSigningRequest,
  V1CertificateSigningRequestCondition,
  V1Node,
  V1Pod,
} from '@kubernetes/client-node';
import { Counter } from 'prom-client';
import type { Registry } from 'prom-client';
import { agentSignerName } from '../../agentapi/index.ts';
import { issueCertificate } from './pki.ts';
import type { SigningAuthority } from './pki.ts';
import type { Clock } from '../../runtime/clock.ts';
import { createInformer, enqueueHandler, waitForCacheSync } from '../../runtime/informer.ts';
import type { Informer } from '../../runtime/informer.ts';
import { resources } from '../../runtime/kube.ts';
import type { KubeClient } from '../../runtime/kube.ts';
import type { Logger } from '../../runtime/logging.ts';
import { runReconcileLoop } from '../../runtime/reconcile-loop.ts';
import { WorkQueue } from '../../runtime/workqueue.ts';
import { reviewAgentCertificateRequest } from './certificate-review.ts';
import type { ReviewContext } from './certificate-review.ts';

type Csr = V1CertificateSigningRequest;

export interface AgentCertificateSignerOptions {
  kube: KubeClient;
  /** Read at each signing: requests are rare, and a rotated CA then needs no restart. */
  authority: () => SigningAuthority;
  nodes: Informer<V1Node>;
  agentNamespace: string;
  agentServiceAccount: string;
  maxLifetimeMs: number;
  clock: Clock;
  log: Logger;
  registry: Registry;
}

export class AgentCertificateSigner {
  readonly #options: AgentCertificateSignerOptions;
  readonly #requests: Informer<Csr>;
  readonly #queue: WorkQueue;
  readonly #results: Counter<'result' | 'reason'>;

  constructor(options: AgentCertificateSignerOptions) {
    this.#options = options;
    this.#requests = createInformer<Csr>(options.kube, resources.certificateSigningRequests, {
      name: 'agent-certificate-requests',
      fieldSelector: `spec.signerName=${agentSignerName}`,
      clock: options.clock,
      logger: options.log,
    });
    this.#queue = new WorkQueue({ name: 'agent-certificates', clock: options.clock });
    this.#requests.addEventHandler(enqueueHandler((key) => this.#queue.add(key)));
    this.#results = new Counter({
      name: 'tote_agent_certificates_total',
      help: 'Agent certificate requests decided by the signer tote.dev/agent, by result (issued, denied) and reason.',
      labelNames: ['result', 'reason'],
      registers: [options.registry],
    });
  }

  /** Signs until `signal` aborts (leadership lost or shutdown). */
  async run(signal: AbortSignal): Promise<void> {
    this.#requests.start();
    signal.addEventListener('abort', () => void this.#queue.shutdown({ drain: false }), { once: true });
    try {
      await waitForCacheSync([this.#requests as unknown as Informer<KubernetesObject>], {
        signal,
        clock: this.#options.clock,
      });
      await runReconcileLoop({
        name: 'agent-certificates',
        queue: this.#queue,
        reconcile: (key) => this.#decide(key),
        logger: this.#options.log,
      });
    } catch (err) {
      if (!signal.aborted) throw err;
    } finally {
      await this.#requests.stop();
    }
  }

  async #decide(key: string): Promise<void> {
    const csr = this.#requests.get(key);
    if (!csr || csr.status?.certificate || has(csr, 'Denied') || has(csr, 'Failed')) return;
    const review = await reviewAgentCertificateRequest(csr, this.#reviewContext());
    const name = csr.metadata?.name ?? key;
    if (!review.approve) {
      this.#options.log.warn('agent certificate request denied', {
        request: name,
        reason: review.reason,
        message: review.message,
      });
      this.#results.inc({ result: 'denied', reason: review.reason });
      // Someone else approved it (kubectl certificate approve): the signer still refuses to sign, and says so.
      if (has(csr, 'Approved'))
        await this.#writeStatus(csr, { conditions: [...conditionsOf(csr), condition('Failed', review)] });
      else await this.#writeApproval(csr, condition('Denied', review));
      return;
    }
    const approved = has(csr, 'Approved')
      ? csr
      : await this.#writeApproval(
          csr,
          condition('Approved', { reason: 'AgentOnItsNode', message: `agent on node ${review.node}` }),
        );
    const certificate = await issueCertificate({
      authority: this.#options.authority(),
      requestPem: Buffer.from(csr.spec.request, 'base64').toString(),
      uri: review.uri,
      now: new Date(this.#options.clock.now()),
      lifetimeSeconds: review.lifetimeSeconds,
    });
    await this.#writeStatus(approved, {
      conditions: conditionsOf(approved),
      certificate: Buffer.from(certificate).toString('base64'),
    });
    this.#results.inc({ result: 'issued', reason: '' });
    this.#options.log.info('agent certificate issued', {
      request: name,
      node: review.node,
      lifetimeSeconds: review.lifetimeSeconds,
    });
  }

  #reviewContext(): ReviewContext {
    const { kube, nodes, agentNamespace, agentServiceAccount, maxLifetimeMs } = this.#options;
    return {
      agentNamespace,
      agentServiceAccount,
      maxLifetimeSeconds: Math.floor(maxLifetimeMs / 1000),
      nodeUid: (name) => nodes.get(name)?.metadata?.uid,
      getPod: (namespace, name) => kube.getOrUndefined<V1Pod>(resources.pods, name, namespace),
    };
  }

  #writeApproval(csr: Csr, decision: V1CertificateSigningRequestCondition): Promise<Csr> {
    const next: Csr = { ...csr, status: { ...csr.status, conditions: [...conditionsOf(csr), decision] } };
    return this.#options.kube.updateSubresource(resources.certificateSigningRequests, next, 'approval');
  }

  #writeStatus(csr: Csr, status: NonNullable<Csr['status']>): Promise<Csr> {
    return this.#options.kube.updateStatus(resources.certificateSigningRequests, { ...csr, status });
  }
}

const conditionsOf = (csr: Csr): V1CertificateSigningRequestCondition[] => csr.status?.conditions ?? [];

const has = (csr: Csr, type: string): boolean => conditionsOf(csr).some((c) => c.type === type && c.status === 'True');

function condition(type: string, why: { reason: string; message: string }): V1CertificateSigningRequestCondition {
  const now = new Date();
  return {
    type,
    status: 'True',
    reason: why.reason,
    message: why.message,
    lastUpdateTime: now,
    lastTransitionTime: now,
  };
}
