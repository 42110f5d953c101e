// The bearer token flow against a real docker-registry configured with `auth: token`, in front of which a small token
// server written for this test issues ES256 JWTs signed by a key whose certificate chains to the registry's
// rootcertbundle (x5c header), as docker/distribution's token access controller verifies them.
import assert from 'node:assert/strict';
import { createPrivateKey, randomUUID, sign, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { isToteError } from '../../../src/api/errors.ts';
import type { RegistryClientOptions } from '../../../src/registry/index.ts';
import { RegistryClient, staticCredentials } from '../../../src/registry/index.ts';
import { createTestCa, startRegistry } from '../../support/registry-process.ts';
import type { RunningRegistry, TestCa } from '../../support/registry-process.ts';
import { buildImage, memorySource } from './image-fixtures.ts';

const user = { username: 'robot', password: 's3cret-token-pass' };
const service = 'tote-test-registry';
const issuer = 'tote-test-issuer';
const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

interface TokenServer {
  readonly realm: string;
  /** Scopes asked for, one entry per token request. */
  readonly requests: string[][];
  close(): Promise<void>;
}

async function startTokenServer(ca: TestCa, lifetimeSeconds: number): Promise<TokenServer> {
  const signer = await ca.issue('token-signer', { dns: ['token-signer'] });
  const tls = await ca.issue('token-server');
  const key = createPrivateKey(signer.keyPem);
  const x5c = [new X509Certificate(signer.certPem).raw.toString('base64')];
  const requests: string[][] = [];
  const server = https.createServer({ key: tls.keyPem, cert: tls.certPem }, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://token');
    const scopes = url.searchParams.getAll('scope');
    requests.push(scopes);
    const authorization = req.headers.authorization ?? '';
    const [login, ...rest] = Buffer.from(authorization.replace(/^Basic /, ''), 'base64')
      .toString()
      .split(':');
    const authenticated = login === user.username && rest.join(':') === user.password;
    if (authorization !== '' && !authenticated) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
      return;
    }
    // Anonymous callers may only pull from public/*; authenticated ones get what they ask.
    const access = scopes.flatMap((scope) => {
      const [type, name, actions] = scope.split(':');
      if (type !== 'repository' || name === undefined || actions === undefined) return [];
      const granted = actions.split(',').filter((a) => authenticated || (a === 'pull' && name.startsWith('public/')));
      return granted.length > 0 ? [{ type, name, actions: granted }] : [];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ alg: 'ES256', typ: 'JWT', x5c }));
    const claims = b64url(
      JSON.stringify({
        iss: issuer,
        sub: authenticated ? user.username : '',
        aud: url.searchParams.get('service'),
        exp: now + lifetimeSeconds,
        nbf: now - 5,
        iat: now,
        jti: randomUUID(),
        access,
      }),
    );
    const signature = sign('sha256', Buffer.from(`${header}.${claims}`), { key, dsaEncoding: 'ieee-p1363' });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: `${header}.${claims}.${b64url(signature)}`, expires_in: lifetimeSeconds }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    realm: `https://127.0.0.1:${(server.address() as AddressInfo).port}/token`,
    requests,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

describe('bearer token flow against docker-registry with token auth', () => {
  let ca: TestCa;
  let tokens: TokenServer;
  let registry: RunningRegistry;
  const clients: RegistryClient[] = [];
  let clock = Date.now();

  const client = (overrides: Partial<RegistryClientOptions> = {}) => {
    const c = new RegistryClient({
      ca: registry.caPem!,
      credentials: staticCredentials({ kind: 'basic', ...user }),
      now: () => clock,
      timeoutMs: 10_000,
      ...overrides,
    });
    clients.push(c);
    return c;
  };

  before(async () => {
    ca = await createTestCa();
    tokens = await startTokenServer(ca, 300);
    registry = await startRegistry({
      ca,
      tokenAuth: { realm: tokens.realm, service, issuer, rootCertBundle: ca.certPath },
    });
  });

  after(async () => {
    for (const c of clients) c.close();
    await registry?.stop();
    await tokens?.close();
  });

  test('pushes and resolves with tokens from the realm, cached per scope until they expire', async () => {
    const image = buildImage({ seed: 60, layers: 2 });
    const c = client();
    const ref = `${registry.host}/team/app:v1`;
    await c.push(ref, image.root, memorySource(image));
    const afterPush = c.tokenRequests;
    assert.ok(afterPush >= 1);
    assert.ok(
      tokens.requests.some((scopes) => scopes.includes('repository:team/app:pull,push')),
      JSON.stringify(tokens.requests),
    );

    const resolver = client();
    assert.equal((await resolver.resolve(ref)).digest, image.root.digest);
    assert.equal(resolver.tokenRequests, 1);
    assert.equal((await resolver.resolve(ref)).digest, image.root.digest);
    assert.equal(resolver.tokenRequests, 1, 'the cached token is reused');

    clock += 301_000;
    assert.equal((await resolver.resolve(ref)).digest, image.root.digest);
    assert.equal(resolver.tokenRequests, 2, 'an expired token is fetched anew');
  });

  test('wrong credentials are refused by the token server as unauthorized', async () => {
    const c = client({ credentials: staticCredentials({ kind: 'basic', username: user.username, password: 'nope' }) });
    await assert.rejects(c.resolve(`${registry.host}/team/app:v1`), (err) => {
      assert.ok(isToteError(err, 'unauthorized'), String(err));
      assert.doesNotMatch(err.message, /nope/);
      return true;
    });
  });

  test('anonymous tokens work where the token server grants them, and are insufficient elsewhere', async () => {
    const image = buildImage({ seed: 61, layers: 1 });
    await client().push(`${registry.host}/public/tool:v1`, image.root, memorySource(image));
    await client().push(`${registry.host}/private/tool:v1`, image.root, memorySource(image));
    const anonymous = client({ credentials: staticCredentials(undefined) });
    assert.equal((await anonymous.resolve(`${registry.host}/public/tool:v1`)).digest, image.root.digest);
    await assert.rejects(anonymous.resolve(`${registry.host}/private/tool:v1`), (err) =>
      isToteError(err, 'unauthorized'),
    );
  });
});
