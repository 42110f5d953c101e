// The signer's decision on agent certificate requests, one reason at a time: requests are real PKCS#10 (made as an
// agent makes them), the cluster is a small table of nodes and pods.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import 'reflect-metadata'; // before @peculiar/x509, as in src/controller/agents/pki.ts
import * as x509 from '@peculiar/x509';
import type { V1CertificateSigningRequest, V1Pod } from '@kubernetes/client-node';
import { createAgentCertificateRequest } from '../../../src/agentapi/index.ts';
import { reviewAgentCertificateRequest } from '../../../src/controller/agents/certificate-review.ts';
import type { ReviewContext } from '../../../src/controller/agents/certificate-review.ts';

const agent = 'system:serviceaccount:tote-system:tote-agent';
const nodes: Record<string, string> = { 'node-a': 'uid-a', 'node-b': 'uid-b' };
const agentPod: V1Pod = {
  metadata: { name: 'tote-agent-x', namespace: 'tote-system', uid: 'pod-uid' },
  spec: { nodeName: 'node-a', serviceAccountName: 'tote-agent', containers: [] },
  status: { phase: 'Running' },
};

function context(pods: V1Pod[] = [agentPod]): ReviewContext {
  return {
    agentNamespace: 'tote-system',
    agentServiceAccount: 'tote-agent',
    maxLifetimeSeconds: 86_400,
    nodeUid: (name) => nodes[name],
    getPod: async (namespace, name) =>
      pods.find((p) => p.metadata?.namespace === namespace && p.metadata.name === name),
  };
}

async function csr(
  options: { node?: string; username?: string; extra?: Record<string, string[]>; request?: string } & Partial<
    V1CertificateSigningRequest['spec']
  > = {},
): Promise<V1CertificateSigningRequest> {
  const request = options.request ?? createAgentCertificateRequest(options.node ?? 'node-a').requestPem;
  return {
    metadata: { name: 'tote-agent-node-a-x' },
    spec: {
      request: Buffer.from(request).toString('base64'),
      signerName: 'tote.dev/agent',
      username: options.username ?? agent,
      extra: options.extra ?? {
        'authentication.kubernetes.io/node-name': ['node-a'],
        'authentication.kubernetes.io/node-uid': ['uid-a'],
      },
      usages: options.usages ?? ['digital signature', 'server auth', 'client auth'],
      ...(options.expirationSeconds !== undefined ? { expirationSeconds: options.expirationSeconds } : {}),
    },
  };
}

const reasonOf = async (request: V1CertificateSigningRequest, ctx = context()) => {
  const review = await reviewAgentCertificateRequest(request, ctx);
  return review.approve ? 'approved' : review.reason;
};

/** A request signed by a key other than the one it carries cannot be made by WebCrypto; one for a DNS name can. */
async function requestNaming(names: { type: 'url' | 'dns'; value: string }[], curve = 'P-256'): Promise<string> {
  const alg = { name: 'ECDSA', namedCurve: curve, hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const request = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=x',
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.SubjectAlternativeNameExtension(names)],
  });
  return request.toString('pem');
}

describe('agent certificate review', () => {
  it('approves an agent token bound to node-a asking for urn:tote:node:node-a, for the lifetime asked', async () => {
    const review = await reviewAgentCertificateRequest(await csr({ expirationSeconds: 3600 }), context());
    assert.deepEqual(review, { approve: true, node: 'node-a', uri: 'urn:tote:node:node-a', lifetimeSeconds: 3600 });
  });

  it('caps the lifetime at the maximum and raises it to the API minimum of 10 minutes', async () => {
    const long = await reviewAgentCertificateRequest(await csr({ expirationSeconds: 10 * 86_400 }), context());
    assert.equal(long.approve && long.lifetimeSeconds, 86_400);
    const short = await reviewAgentCertificateRequest(await csr({ expirationSeconds: 60 }), context());
    assert.equal(short.approve && short.lifetimeSeconds, 600);
  });

  it('denies another identity than the agent ServiceAccount', async () => {
    assert.equal(
      await reasonOf(await csr({ username: 'system:serviceaccount:default:default' })),
      'NotAgentServiceAccount',
    );
    assert.equal(await reasonOf(await csr({ username: 'kubernetes-admin' })), 'NotAgentServiceAccount');
  });

  it('denies a token bound to no node, or to several', async () => {
    assert.equal(await reasonOf(await csr({ extra: {} })), 'NoNodeBinding');
    const two = { 'authentication.kubernetes.io/node-name': ['node-a', 'node-b'] };
    assert.equal(await reasonOf(await csr({ extra: two })), 'NoNodeBinding');
  });

  it('denies a node that is gone, or was replaced by one of the same name', async () => {
    const gone = { 'authentication.kubernetes.io/node-name': ['node-z'] };
    assert.equal(await reasonOf(await csr({ node: 'node-z', extra: gone })), 'UnknownNode');
    const replaced = {
      'authentication.kubernetes.io/node-name': ['node-a'],
      'authentication.kubernetes.io/node-uid': ['uid-of-an-older-node-a'],
    };
    assert.equal(await reasonOf(await csr({ extra: replaced })), 'UnknownNode');
  });

  it("denies a request for another node's identity", async () => {
    assert.equal(await reasonOf(await csr({ node: 'node-b' })), 'WrongIdentity');
  });

  it('denies extra names: a DNS name, a second URI, or none', async () => {
    const dns = await requestNaming([
      { type: 'url', value: 'urn:tote:node:node-a' },
      { type: 'dns', value: 'kubernetes.default' },
    ]);
    assert.equal(await reasonOf(await csr({ request: dns })), 'WrongIdentity');
    const controller = await requestNaming([
      { type: 'url', value: 'urn:tote:node:node-a' },
      { type: 'url', value: 'urn:tote:controller' },
    ]);
    assert.equal(await reasonOf(await csr({ request: controller })), 'WrongIdentity');
    assert.equal(await reasonOf(await csr({ request: await requestNaming([]) })), 'WrongIdentity');
  });

  it('denies keys tote does not issue for, usages beyond TLS, and bytes that are not a request', async () => {
    const p521 = await requestNaming([{ type: 'url', value: 'urn:tote:node:node-a' }], 'P-521');
    assert.equal(await reasonOf(await csr({ request: p521 })), 'UnsupportedKey');
    assert.equal(await reasonOf(await csr({ usages: ['client auth', 'cert sign'] })), 'UnsupportedUsage');
    assert.equal(await reasonOf(await csr({ request: 'not a request' })), 'BadRequest');
  });

  describe('a pod-bound token', () => {
    const podExtra = (pod: string, uid = 'pod-uid') => ({
      'authentication.kubernetes.io/node-name': ['node-a'],
      'authentication.kubernetes.io/pod-name': [pod],
      'authentication.kubernetes.io/pod-uid': [uid],
    });

    it('approves an agent pod running on the node', async () => {
      assert.equal(await reasonOf(await csr({ extra: podExtra('tote-agent-x') })), 'approved');
    });

    it('denies when the pod is gone, replaced, elsewhere, another account, or ended', async () => {
      assert.equal(await reasonOf(await csr({ extra: podExtra('tote-agent-gone') })), 'PodNotOnNode');
      assert.equal(await reasonOf(await csr({ extra: podExtra('tote-agent-x', 'older-uid') })), 'PodNotOnNode');
      const variants: V1Pod[] = [
        { ...agentPod, spec: { ...agentPod.spec, nodeName: 'node-b', containers: [] } },
        { ...agentPod, spec: { ...agentPod.spec, serviceAccountName: 'default', containers: [] } },
        { ...agentPod, status: { phase: 'Succeeded' } },
      ];
      for (const pod of variants)
        assert.equal(await reasonOf(await csr({ extra: podExtra('tote-agent-x') }), context([pod])), 'PodNotOnNode');
    });
  });
});
