// tote's kubeconfig credentials against the real API server: an exec plugin handing out a client certificate, a
// token file whose token is refused (401) and then replaced, which the next call picks up without waiting for the
// minute's refresh, and a certificate authority that does not match the server.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import type { KubernetesObject } from '@kubernetes/client-node';
import { ensureCluster, kubectl, testNamespace } from '../../support/index.ts';
import type { ClusterEnv } from '../../support/index.ts';
import { KubeApiError, KubeClient, loadKubeConfig } from '../../../src/runtime/kube.ts';
import type { ResourceType } from '../../../src/runtime/kube.ts';

/** Who the API server says we are: allowed to every authenticated user, so it isolates authentication. */
const selfSubjectReviews: ResourceType = {
  group: 'authentication.k8s.io',
  version: 'v1',
  plural: 'selfsubjectreviews',
  namespaced: false,
};

async function whoAmI(client: KubeClient): Promise<string | undefined> {
  const review = await client.create<KubernetesObject & { status?: { userInfo?: { username?: string } } }>(
    selfSubjectReviews,
    {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'SelfSubjectReview',
      metadata: {},
    },
  );
  return review.status?.userInfo?.username;
}

interface AdminConfig {
  clusters: { cluster: { server: string; 'certificate-authority-data': string } }[];
  users: { user: { 'client-certificate-data': string; 'client-key-data': string } }[];
}

describe('kubeconfig credentials (real API server)', () => {
  let env: ClusterEnv;
  let admin: AdminConfig;
  const dir = mkdtempSync(join(tmpdir(), 'tote-credentials-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  before(async () => {
    env = await ensureCluster();
    admin = parse(readFileSync(env.kubeconfig, 'utf8')) as AdminConfig;
  });

  /** A kubeconfig for the test cluster with the given user entry (and optionally another CA). */
  function config(name: string, user: object, ca = admin.clusters[0]!.cluster['certificate-authority-data']): string {
    const file = join(dir, name);
    writeFileSync(
      file,
      stringify({
        clusters: [
          { name: 'c', cluster: { server: admin.clusters[0]!.cluster.server, 'certificate-authority-data': ca } },
        ],
        users: [{ name: 'u', user }],
        contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
        'current-context': 'x',
      }),
      { mode: 0o600 },
    );
    return file;
  }

  it('authenticates with the client certificate an exec plugin prints', async () => {
    const user = admin.users[0]!.user;
    const credential = {
      apiVersion: 'client.authentication.k8s.io/v1',
      kind: 'ExecCredential',
      status: {
        clientCertificateData: Buffer.from(user['client-certificate-data'], 'base64').toString(),
        clientKeyData: Buffer.from(user['client-key-data'], 'base64').toString(),
      },
    };
    writeFileSync(join(dir, 'credential.json'), JSON.stringify(credential), { mode: 0o600 });
    writeFileSync(join(dir, 'plugin.sh'), `#!/bin/sh\nexec cat "${join(dir, 'credential.json')}"\n`, { mode: 0o700 });
    const client = new KubeClient(
      loadKubeConfig(
        config('exec', { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: join(dir, 'plugin.sh') } }),
      ),
    );
    assert.equal(await whoAmI(client), 'admin');
    client.close();
  });

  it('after a 401, reads the token file again on the next call instead of a minute later', async (t) => {
    const ns = await testNamespace(env, t);
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'not-a-token');
    const client = new KubeClient(loadKubeConfig(config('token-config', { tokenFile })));
    const refused = await whoAmI(client).then(
      () => assert.fail('a bad token must be refused'),
      (e: unknown) => e,
    );
    assert.ok(
      refused instanceof KubeApiError && refused.code === 401 && refused.kind === 'unauthorized',
      String(refused),
    );
    const token = await kubectl(env, ['create', 'token', 'default', '-n', ns.name]);
    assert.equal(token.code, 0, token.stderr);
    writeFileSync(tokenFile, token.stdout.trim());
    assert.equal(await whoAmI(client), `system:serviceaccount:${ns.name}:default`);
    client.close();
  });

  it('refuses a server whose certificate the configured CA did not sign', async () => {
    const user = admin.users[0]!.user;
    // Any CA but the cluster's: the client certificate's own PEM is not a CA that signed the server.
    const client = new KubeClient(
      loadKubeConfig(config('wrong-ca', { token: 'secret' }, user['client-certificate-data'])),
      {
        requestTimeoutMs: 5000,
      },
    );
    const err = await whoAmI(client).then(
      () => assert.fail('an unverified server must be refused'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof KubeApiError && err.code === 0, String(err));
    assert.match(err.message, /certificate/i);
    client.close();
  });
});
