import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isToteError } from '../../../src/api/errors.ts';
import type { SecretLike } from '../../../src/registry/index.ts';
import { credentialsFromDockerConfig, credentialsFromSecret } from '../../../src/registry/index.ts';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const secret = (config: unknown, overrides: Partial<SecretLike> = {}): SecretLike => ({
  metadata: { name: 'pull', namespace: 'apps' },
  type: 'kubernetes.io/dockerconfigjson',
  data: { '.dockerconfigjson': b64(JSON.stringify(config)) },
  ...overrides,
});

describe('credentialsFromSecret', () => {
  test('decodes auth, username/password, identitytoken and registrytoken entries', () => {
    const lookup = credentialsFromSecret(
      secret({
        auths: {
          'registry.example.com': { auth: b64('alice:pa:ss') },
          'https://index.docker.io/v1/': { username: 'bob', password: 'hunter2' },
          'acr.example.io': { username: '00000000-0000-0000-0000-000000000000', identitytoken: 'refresh-me' },
          'gcr.example.io': { registrytoken: 'raw-bearer' },
          'anon.example.io': {},
        },
      }),
    );
    assert.deepEqual(lookup('registry.example.com'), { kind: 'basic', username: 'alice', password: 'pa:ss' });
    assert.deepEqual(lookup('docker.io'), { kind: 'basic', username: 'bob', password: 'hunter2' });
    assert.deepEqual(lookup('acr.example.io'), {
      kind: 'identity-token',
      identityToken: 'refresh-me',
      username: '00000000-0000-0000-0000-000000000000',
    });
    assert.deepEqual(lookup('gcr.example.io'), { kind: 'registry-token', token: 'raw-bearer' });
    assert.equal(lookup('anon.example.io'), undefined);
    assert.equal(lookup('elsewhere.example.com'), undefined);
  });

  test('auth wins over username/password in the same entry', () => {
    const lookup = credentialsFromDockerConfig({
      auths: { 'r.example': { auth: b64('fromauth:p1'), username: 'u2', password: 'p2' } },
    });
    assert.deepEqual(lookup('r.example'), { kind: 'basic', username: 'fromauth', password: 'p1' });
  });

  test('matches keys given as host, host:port, URL, wildcard and path prefix', () => {
    const lookup = credentialsFromDockerConfig({
      auths: {
        'http://localhost:5000': { username: 'port', password: 'x' },
        'https://Mirror.Example.com/v2/': { username: 'url', password: 'x' },
        '*.corp.example': { username: 'wild', password: 'x' },
        'reg.corp.example/team-a': { username: 'team-a', password: 'x' },
        'reg.corp.example': { username: 'exact', password: 'x' },
      },
    });
    const who = (domain: string, repo?: string) => {
      const c = lookup(domain, repo);
      return c?.kind === 'basic' ? c.username : undefined;
    };
    assert.equal(who('localhost:5000'), 'port');
    assert.equal(who('localhost'), undefined, 'a port must match');
    assert.equal(who('mirror.example.com'), 'url');
    assert.equal(who('other.corp.example'), 'wild');
    assert.equal(who('a.b.corp.example'), undefined, 'a wildcard is one label');
    assert.equal(who('reg.corp.example', 'team-a/app'), 'team-a');
    assert.equal(who('reg.corp.example', 'team-ab/app'), 'exact');
    assert.equal(who('reg.corp.example', 'team-b/app'), 'exact');
  });

  test('Docker Hub keys under any of its names serve docker.io', () => {
    for (const key of ['docker.io', 'index.docker.io', 'https://index.docker.io/v1/', 'registry-1.docker.io']) {
      const lookup = credentialsFromDockerConfig({ auths: { [key]: { username: 'hub', password: 'x' } } });
      assert.equal(lookup('docker.io')?.kind, 'basic', key);
    }
  });

  test('accepts the legacy kubernetes.io/dockercfg Secret', () => {
    const lookup = credentialsFromSecret({
      type: 'kubernetes.io/dockercfg',
      data: { '.dockercfg': b64(JSON.stringify({ 'r.example': { auth: b64('u:p') } })) },
    });
    assert.deepEqual(lookup('r.example'), { kind: 'basic', username: 'u', password: 'p' });
  });

  const refusals: Array<{ name: string; secret: SecretLike; why: RegExp }> = [
    {
      name: 'an Opaque Secret',
      secret: secret({ auths: {} }, { type: 'Opaque' }),
      why: /apps\/pull has type "Opaque".*dockerconfigjson/,
    },
    { name: 'a Secret without type', secret: secret({ auths: {} }, { type: undefined }), why: /type ""/ },
    { name: 'a missing key', secret: secret({}, { data: {} }), why: /no \.dockerconfigjson key/ },
    {
      name: 'non-JSON content',
      secret: secret({}, { data: { '.dockerconfigjson': b64('{not json') } }),
      why: /\.dockerconfigjson that is not base64-encoded JSON/,
    },
    { name: 'no auths', secret: secret({ credsStore: 'desktop' }), why: /no "auths"/ },
    { name: 'auths not an object', secret: secret({ auths: [] }), why: /"auths" that is not an object/ },
    {
      name: 'an entry not an object',
      secret: secret({ auths: { 'r.example': 'x' } }),
      why: /auths\["r.example"\] is not an object/,
    },
    {
      name: 'auth without a colon',
      secret: secret({ auths: { 'r.example': { auth: b64('nocolon') } } }),
      why: /"auth" that is not base64/,
    },
    {
      name: 'a non-string password',
      secret: secret({ auths: { 'r.example': { username: 'u', password: 5 } } }),
      why: /"password" that is not a string/,
    },
    {
      name: 'an empty key',
      secret: secret({ auths: { '': { username: 'u', password: 'p' } } }),
      why: /names no registry host/,
    },
  ];
  for (const r of refusals) {
    test(`refuses ${r.name} with SecretInvalid`, () => {
      assert.throws(
        () => credentialsFromSecret(r.secret),
        (err) => {
          assert.ok(isToteError(err, 'terminal'), String(err));
          assert.equal(err.reason, 'SecretInvalid');
          assert.match(err.message, r.why);
          return true;
        },
      );
    });
  }

  test('error messages never contain secret values', () => {
    const bad = secret({ auths: { 'r.example': { username: 'u', password: 'TOPSECRET', auth: 'TOPSECRET!!' } } });
    assert.throws(
      () => credentialsFromSecret(bad),
      (err) => !String(err).includes('TOPSECRET'),
    );
  });
});
