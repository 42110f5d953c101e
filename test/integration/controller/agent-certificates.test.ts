// Agent identities from tote's signer, against the real API server and the running controller: an agent gets a
// certificate naming its own node, made with a key that never leaves it; no other credential obtains that identity;
// and a certificate is renewed, and presented to new connections, without a restart.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import type { V1CertificateSigningRequest, V1Pod } from '@kubernetes/client-node';
import { certificateFacts, identityUri, RenewableTls } from '../../../src/agentapi/index.ts';
import type { TlsMaterial } from '../../../src/agentapi/index.ts';
import { startAgentServer } from '../../../src/agent/index.ts';
import type { AgentServer } from '../../../src/agent/index.ts';
import { CertificateNotIssued, NodeCertificate } from '../../../src/agent/node-certificate.ts';
import { connectContainerd } from '../../../src/containerd/index.ts';
import { systemClock } from '../../../src/runtime/clock.ts';
import type { Clock } from '../../../src/runtime/clock.ts';
import { KubeClient, loadKubeConfig, resources } from '../../../src/runtime/kube.ts';
import { silentLogger } from '../../../src/runtime/logging.ts';
import { ensureCluster, kubectl } from '../../support/cluster.ts';
import type { ClusterEnv } from '../../support/cluster.ts';
import { ensureTote, serviceAccountKubeconfig, toteNamespace } from '../../support/tote.ts';
import type { ToteDeployment } from '../../support/tote.ts';

let env: ClusterEnv;
let tote: ToteDeployment;
let ca: Buffer;

const kubeFrom = (kubeconfig: string) => new KubeClient(loadKubeConfig(kubeconfig), { fieldManager: 'test' });

function agentCertificate(kube: KubeClient, node: string, clock: Clock = systemClock): NodeCertificate {
  return new NodeCertificate({ kube, node, ca, lifetimeMs: 600_000, clock, log: silentLogger, pollMs: 100 });
}

/** A kubeconfig for the tote-agent ServiceAccount with a token made by `kubectl create token` with these flags. */
async function agentTokenKubeconfig(name: string, flags: string[]): Promise<string> {
  const token = await kubectl(env, ['create', 'token', 'tote-agent', '-n', toteNamespace, '--duration=1h', ...flags]);
  assert.equal(token.code, 0, token.stderr);
  const file = join(tote.paths.dir, `test-${name}.kubeconfig`);
  writeFileSync(file, serviceAccountKubeconfig(env, 'tote-agent', token.stdout.trim()), { mode: 0o600 });
  return file;
}

/** The signer's reason for denying the request `request` made. */
async function deniedReason(request: Promise<unknown>): Promise<string> {
  const err = await request.then(
    () => assert.fail('a certificate was issued'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof CertificateNotIssued, String(err));
  const reason = /Denied \((\w+)\)/.exec(err.message)?.[1];
  assert.ok(reason, err.message);
  return reason;
}

describe('agent certificates from the signer tote.dev/agent (real API server, running controller)', () => {
  before(async () => {
    env = await ensureCluster();
    tote = await ensureTote(env);
    ca = readFileSync(join(tote.paths.certs, 'ca.crt'));
  });

  it('an agent gets a certificate for its own node only, for the lifetime it asked, from a key it made', async () => {
    const kube = kubeFrom(tote.paths.agentKubeconfig('node-a'));
    const material = await agentCertificate(kube, 'node-a').request();
    const facts = certificateFacts(material.cert);
    assert.deepEqual(facts.uris, [identityUri({ kind: 'agent', node: 'node-a' })]);
    const lifetimeS = (facts.notAfter.getTime() - facts.notBefore.getTime()) / 1000;
    // 600 s asked, back-dated by a minute for clock skew between nodes.
    assert.equal(lifetimeS, 660);
    // The private key never went to the API server: no CertificateSigningRequest carries it.
    const admin = kubeFrom(env.kubeconfig);
    const requests = await admin.list<V1CertificateSigningRequest>(resources.certificateSigningRequests);
    const keyBody = material.key.toString().split('\n')[1] ?? '';
    assert.ok(keyBody.length > 20);
    assert.ok(!JSON.stringify(requests).includes(keyBody));
  });

  it("a node's token cannot obtain another node's identity", async () => {
    const kube = kubeFrom(tote.paths.agentKubeconfig('node-a'));
    assert.equal(await deniedReason(agentCertificate(kube, 'node-b').request()), 'WrongIdentity');
  });

  it('a token bound to no node gets nothing', async () => {
    const kube = kubeFrom(await agentTokenKubeconfig('unbound', []));
    assert.equal(await deniedReason(agentCertificate(kube, 'node-a').request()), 'NoNodeBinding');
  });

  it('only the agent ServiceAccount is signed for, not even a cluster admin', async () => {
    const kube = kubeFrom(env.kubeconfig);
    assert.equal(await deniedReason(agentCertificate(kube, 'node-a').request()), 'NotAgentServiceAccount');
  });

  describe('a token the kubelet would project into an agent pod (bound to the pod)', () => {
    const podName = `agent-identity-${process.pid}`;
    let podKubeconfig: string;
    before(async () => {
      const admin = kubeFrom(env.kubeconfig);
      const pod = await admin.create<V1Pod>(resources.pods, {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: podName, namespace: toteNamespace },
        spec: {
          nodeName: 'node-b',
          serviceAccountName: 'tote-agent',
          containers: [{ name: 'agent', image: 'registry.invalid/tote:test' }],
        },
      });
      podKubeconfig = await agentTokenKubeconfig('pod-bound', [
        '--bound-object-kind=Pod',
        `--bound-object-name=${podName}`,
        `--bound-object-uid=${pod.metadata?.uid ?? ''}`,
      ]);
    });
    after(async () => {
      await kubectl(env, ['delete', 'pod', podName, '-n', toteNamespace, '--wait=false']);
    });

    it('is signed for the node its pod runs on', async () => {
      const material = await agentCertificate(kubeFrom(podKubeconfig), 'node-b').request();
      assert.deepEqual(certificateFacts(material.cert).uris, [identityUri({ kind: 'agent', node: 'node-b' })]);
    });

    it('and for no other node', async () => {
      assert.equal(await deniedReason(agentCertificate(kubeFrom(podKubeconfig), 'node-a').request()), 'WrongIdentity');
    });
  });

  describe('renewal without a restart', () => {
    let server: AgentServer;
    let tls: RenewableTls;
    let renewal: { stop(): void } | undefined;
    after(async () => {
      renewal?.stop();
      await server?.stop();
    });

    /** The serial number of the certificate the agent's port presents to a new connection. */
    async function presentedSerial(address: string): Promise<string> {
      const [host = '', port = ''] = address.split(':');
      const controller: TlsMaterial = {
        ca,
        cert: readFileSync(join(tote.paths.certs, 'controller.crt')),
        key: readFileSync(join(tote.paths.certs, 'controller.key')),
      };
      return new Promise((resolve, reject) => {
        const socket = connect(
          {
            host,
            port: Number(port),
            ...controller,
            ALPNProtocols: ['http/1.1'],
            checkServerIdentity: () => undefined,
          },
          () => {
            const serial = socket.getPeerCertificate().serialNumber;
            socket.destroy();
            resolve(serial);
          },
        );
        socket.on('error', reject);
      });
    }

    it("an agent past two thirds of its certificate's life gets a new one; its port presents it to new connections", async () => {
      const kube = kubeFrom(tote.paths.agentKubeconfig('node-c'));
      tls = new RenewableTls(await agentCertificate(kube, 'node-c').request());
      server = await startAgentServer({
        nodeName: 'node-c',
        containerd: connectContainerd({ socket: env.nodeSockets.get('node-c') ?? '' }),
        tls,
        tokenPublicKey: readFileSync(join(tote.paths.certs, 'signing/public.pem'), 'utf8'),
        listen: '127.0.0.1:0',
        registry: new Registry(),
      });
      const first = await presentedSerial(server.address);
      assert.equal(first, serialOf(tls.current));

      // A clock eight minutes ahead: the 11-minute certificate is past two thirds of its life, so renewal is due now.
      const ahead: Clock = { ...systemClock, now: () => Date.now() + 8 * 60_000 };
      const before = tls.current;
      const renewed = new Promise<TlsMaterial>((resolve) => tls.onReplace(resolve));
      renewal = agentCertificate(kube, 'node-c', ahead).keepRenewed(tls);
      const material = await renewed;
      assert.notEqual(serialOf(material), first);
      assert.ok(!material.key.equals(before.key), 'a fresh key');
      assert.equal(await presentedSerial(server.address), serialOf(material), 'new connections see the new one');
    });
  });
});

const serialOf = (material: TlsMaterial): string => new X509Certificate(material.cert).serialNumber;
