// The signer's one decision: may this CertificateSigningRequest get an agent certificate, and for which node?
// The API server writes who made the request into spec (username, extra) and nobody can set those by hand; the kubelet
// binds an agent pod's ServiceAccount token to the pod and its node, and the API server copies the node's and the
// pod's name and UID from that token into extra. So a request is signed only when it was made with the agent's
// ServiceAccount token bound to node N (and, for a pod-bound token, by a live agent pod on N) and asks for exactly
// urn:tote:node:N — a compromised node can never obtain another node's identity.
import type { V1CertificateSigningRequest, V1Pod } from '@kubernetes/client-node';
import { identityUri } from '../../agentapi/index.ts';
import { readCertificateRequest } from './pki.ts';

const extraKey = (field: string) => `authentication.kubernetes.io/${field}`;

/** Usages an agent certificate may be asked for; tote issues digital signature, server auth and client auth. */
const allowedUsages = new Set(['digital signature', 'key encipherment', 'server auth', 'client auth']);
const allowedKeys = new Set(['ECDSA P-256', 'ECDSA P-384']);

export type Review =
  | { readonly approve: true; readonly node: string; readonly uri: string; readonly lifetimeSeconds: number }
  | { readonly approve: false; readonly reason: string; readonly message: string };

export interface ReviewContext {
  readonly agentNamespace: string;
  readonly agentServiceAccount: string;
  readonly maxLifetimeSeconds: number;
  /** The UID of the node named `name`, or undefined when no such node exists. */
  nodeUid(name: string): string | undefined;
  /** The pod, read from the API server (not a cache: a pod deleted a moment ago must not count). */
  getPod(namespace: string, name: string): Promise<V1Pod | undefined>;
}

const deny = (reason: string, message: string): Review => ({ approve: false, reason, message });

export async function reviewAgentCertificateRequest(
  csr: V1CertificateSigningRequest,
  context: ReviewContext,
): Promise<Review> {
  const spec = csr.spec;
  const agent = `system:serviceaccount:${context.agentNamespace}:${context.agentServiceAccount}`;
  if (spec.username !== agent)
    return deny('NotAgentServiceAccount', `requested by ${spec.username ?? 'nobody'}, not by ${agent}`);
  const node = single(spec.extra?.[extraKey('node-name')]);
  if (node === undefined)
    return deny('NoNodeBinding', "the requester's token is not bound to a node (it carries no node-name)");
  const nodeUid = context.nodeUid(node);
  if (nodeUid === undefined) return deny('UnknownNode', `node ${node} does not exist`);
  const tokenNodeUid = single(spec.extra?.[extraKey('node-uid')]);
  if (tokenNodeUid !== undefined && tokenNodeUid !== nodeUid)
    return deny('UnknownNode', `the token names node ${node} with UID ${tokenNodeUid}; that node now has ${nodeUid}`);
  const podProblem = await checkRequestingPod(spec.extra, node, context);
  if (podProblem !== undefined) return deny('PodNotOnNode', podProblem);
  const requestProblem = await checkRequest(spec, node);
  if (requestProblem !== undefined) return deny(requestProblem.reason, requestProblem.message);
  const asked = spec.expirationSeconds ?? context.maxLifetimeSeconds;
  return {
    approve: true,
    node,
    uri: identityUri({ kind: 'agent', node }),
    lifetimeSeconds: Math.min(Math.max(asked, 600), context.maxLifetimeSeconds),
  };
}

/** A pod-bound token must come from a pod that still exists (same UID), runs on `node` and is an agent. */
async function checkRequestingPod(
  extra: Record<string, string[]> | undefined,
  node: string,
  context: ReviewContext,
): Promise<string | undefined> {
  const podName = single(extra?.[extraKey('pod-name')]);
  if (podName === undefined) return undefined; // a token bound to the Node itself (kubectl create token --bound-object-kind=Node)
  const pod = await context.getPod(context.agentNamespace, podName);
  const podUid = single(extra?.[extraKey('pod-uid')]);
  if (pod === undefined || (podUid !== undefined && pod.metadata?.uid !== podUid))
    return `pod ${context.agentNamespace}/${podName} of the token no longer exists`;
  if (pod.spec?.nodeName !== node) return `pod ${podName} runs on ${pod.spec?.nodeName ?? 'no node'}, not on ${node}`;
  if (pod.spec?.serviceAccountName !== context.agentServiceAccount)
    return `pod ${podName} runs as ${pod.spec?.serviceAccountName ?? 'default'}, not ${context.agentServiceAccount}`;
  if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return `pod ${podName} has ended`;
  return undefined;
}

/** The request itself: a valid self-signed PKCS#10 for a supported key, naming exactly this node, usual usages. */
async function checkRequest(
  spec: V1CertificateSigningRequest['spec'],
  node: string,
): Promise<{ reason: string; message: string } | undefined> {
  const extraUsages = (spec.usages ?? []).filter((u) => !allowedUsages.has(u));
  if (extraUsages.length > 0)
    return { reason: 'UnsupportedUsage', message: `usages ${extraUsages.join(', ')} are not issued to agents` };
  let contents;
  try {
    contents = await readCertificateRequest(Buffer.from(spec.request, 'base64').toString());
  } catch (err) {
    return { reason: 'BadRequest', message: (err as Error).message };
  }
  if (!allowedKeys.has(contents.keyAlgorithm))
    return { reason: 'UnsupportedKey', message: `${contents.keyAlgorithm} keys are not signed (ECDSA P-256 or P-384)` };
  const want = identityUri({ kind: 'agent', node });
  if (contents.otherNames.length > 0 || contents.uris.length !== 1 || contents.uris[0] !== want) {
    const asked = [...contents.uris, ...contents.otherNames].join(', ') || 'no name';
    return {
      reason: 'WrongIdentity',
      message: `the request asks for ${asked}; a token of node ${node} gets ${want} only`,
    };
  }
  return undefined;
}

const single = (values: readonly string[] | undefined): string | undefined =>
  values?.length === 1 && values[0] ? values[0] : undefined;
