import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isToteError } from '../../../src/api/errors.ts';
import { familiarName, parseDigest, parseReference, withIdentifiers } from '../../../src/registry/index.ts';

const hex64 = 'a'.repeat(64);
const d = `sha256:${hex64}`;

interface Valid {
  input: string;
  domain: string;
  path: string;
  tag?: string;
  digest?: string;
  apiHost?: string;
  identifier: string;
  canonical: string;
}

// Expectations follow distribution/reference's ParseNormalizedNamed (what containerd and the kubelet use).
const valid: Valid[] = [
  {
    input: 'nginx',
    domain: 'docker.io',
    path: 'library/nginx',
    identifier: 'latest',
    canonical: 'docker.io/library/nginx',
  },
  {
    input: 'nginx:1.27',
    domain: 'docker.io',
    path: 'library/nginx',
    tag: '1.27',
    identifier: '1.27',
    canonical: 'docker.io/library/nginx:1.27',
  },
  { input: 'user/app', domain: 'docker.io', path: 'user/app', identifier: 'latest', canonical: 'docker.io/user/app' },
  {
    input: 'docker.io/nginx',
    domain: 'docker.io',
    path: 'library/nginx',
    identifier: 'latest',
    canonical: 'docker.io/library/nginx',
  },
  {
    input: 'index.docker.io/nginx',
    domain: 'docker.io',
    path: 'library/nginx',
    identifier: 'latest',
    canonical: 'docker.io/library/nginx',
  },
  {
    input: 'index.docker.io/user/app:v1',
    domain: 'docker.io',
    path: 'user/app',
    tag: 'v1',
    identifier: 'v1',
    canonical: 'docker.io/user/app:v1',
  },
  {
    input: 'docker.io/library/nginx:latest',
    domain: 'docker.io',
    path: 'library/nginx',
    tag: 'latest',
    identifier: 'latest',
    canonical: 'docker.io/library/nginx:latest',
    apiHost: 'registry-1.docker.io',
  },
  {
    input: 'localhost/app',
    domain: 'localhost',
    path: 'app',
    identifier: 'latest',
    canonical: 'localhost/app',
    apiHost: 'localhost',
  },
  {
    input: 'localhost:5000/app:dev',
    domain: 'localhost:5000',
    path: 'app',
    tag: 'dev',
    identifier: 'dev',
    canonical: 'localhost:5000/app:dev',
  },
  {
    input: '127.0.0.1:5000/a/b/c',
    domain: '127.0.0.1:5000',
    path: 'a/b/c',
    identifier: 'latest',
    canonical: '127.0.0.1:5000/a/b/c',
  },
  { input: '[::1]:5000/app', domain: '[::1]:5000', path: 'app', identifier: 'latest', canonical: '[::1]:5000/app' },
  {
    input: 'registry.example.com/team/app',
    domain: 'registry.example.com',
    path: 'team/app',
    identifier: 'latest',
    canonical: 'registry.example.com/team/app',
    apiHost: 'registry.example.com',
  },
  {
    input: 'Registry.Example.com/team/app',
    domain: 'Registry.Example.com',
    path: 'team/app',
    identifier: 'latest',
    canonical: 'Registry.Example.com/team/app',
  },
  {
    input: 'ghcr.io/org/app.name_with__seps-and---dashes:v1.2_3-x',
    domain: 'ghcr.io',
    path: 'org/app.name_with__seps-and---dashes',
    tag: 'v1.2_3-x',
    identifier: 'v1.2_3-x',
    canonical: 'ghcr.io/org/app.name_with__seps-and---dashes:v1.2_3-x',
  },
  {
    input: `nginx@${d}`,
    domain: 'docker.io',
    path: 'library/nginx',
    digest: d,
    identifier: d,
    canonical: `docker.io/library/nginx@${d}`,
  },
  {
    input: `quay.io/a/b:v1@${d}`,
    domain: 'quay.io',
    path: 'a/b',
    tag: 'v1',
    digest: d,
    identifier: d,
    canonical: `quay.io/a/b:v1@${d}`,
  },
  {
    input: `host:443/a:${'t'.repeat(128)}`,
    domain: 'host:443',
    path: 'a',
    tag: 't'.repeat(128),
    identifier: 't'.repeat(128),
    canonical: `host:443/a:${'t'.repeat(128)}`,
  },
  {
    input: `example.com/${'a'.repeat(255)}`,
    domain: 'example.com',
    path: 'a'.repeat(255),
    identifier: 'latest',
    canonical: `example.com/${'a'.repeat(255)}`,
  },
  {
    input: 'foo_bar/baz',
    domain: 'docker.io',
    path: 'foo_bar/baz',
    identifier: 'latest',
    canonical: 'docker.io/foo_bar/baz',
  },
];

const invalid: Array<{ input: string; why: RegExp }> = [
  { input: '', why: /empty/ },
  { input: ' nginx', why: /whitespace/ },
  { input: hex64, why: /image ID/ },
  { input: 'Nginx', why: /must be lowercase/ },
  { input: 'user/App', why: /must be lowercase/ },
  { input: 'localhost:5000/App:v1', why: /must be lowercase/ },
  { input: 'nginx:', why: /tag ""/ },
  { input: 'nginx:-bad', why: /tag "-bad"/ },
  { input: `nginx:${'t'.repeat(129)}`, why: /tag/ },
  { input: 'nginx:a b', why: /tag/ },
  { input: 'nginx@sha256:abc', why: /digest/ },
  { input: `nginx@sha256:${'A'.repeat(64)}`, why: /lowercase hexadecimal/ },
  { input: `nginx@sha256:${'a'.repeat(63)}`, why: /digest/ },
  { input: `nginx@md5:${'a'.repeat(32)}`, why: /unsupported algorithm "md5"/ },
  { input: 'nginx@', why: /digest/ },
  { input: '/nginx', why: /repository/ },
  { input: 'nginx/', why: /repository/ },
  { input: 'a//b', why: /repository/ },
  { input: 'example.com/-app', why: /repository/ },
  { input: 'example.com/app-', why: /repository/ },
  { input: 'example.com/a...b', why: /repository/ },
  { input: 'example.com:port/app', why: /repository/ },
  { input: '-host.com/app', why: /repository/ },
  { input: `example.com/${'a'.repeat(256)}`, why: /more than 255/ },
  { input: 'docker.io/library/nginx:1:2', why: /tag|repository/ },
  { input: 'app@sha256:x:y', why: /digest/ },
];

describe('parseReference', () => {
  for (const c of valid) {
    test(`parses ${c.input.length > 60 ? `${c.input.slice(0, 60)}…` : c.input}`, () => {
      const ref = parseReference(c.input);
      assert.equal(ref.domain, c.domain);
      assert.equal(ref.path, c.path);
      assert.equal(ref.name, `${c.domain}/${c.path}`);
      assert.equal(ref.tag, c.tag);
      assert.equal(ref.digest, c.digest);
      assert.equal(ref.identifier, c.identifier);
      assert.equal(ref.toString(), c.canonical);
      if (c.apiHost !== undefined) assert.equal(ref.apiHost, c.apiHost);
      assert.ok(Object.isFrozen(ref));
      // Normalisation is idempotent.
      assert.equal(parseReference(ref.toString()).toString(), c.canonical);
    });
  }

  for (const c of invalid) {
    test(`rejects ${JSON.stringify(c.input.length > 60 ? `${c.input.slice(0, 60)}…` : c.input)}`, () => {
      assert.throws(
        () => parseReference(c.input),
        (err) => {
          assert.ok(isToteError(err, 'terminal'), String(err));
          assert.match(err.reason, /^Invalid(ImageReference|Digest)$/);
          assert.match(err.message, c.why);
          return true;
        },
      );
    });
  }

  test('Docker Hub references talk to registry-1.docker.io', () => {
    assert.equal(parseReference('busybox').apiHost, 'registry-1.docker.io');
    assert.equal(parseReference('index.docker.io/busybox').apiHost, 'registry-1.docker.io');
    assert.equal(parseReference('quay.io/busybox').apiHost, 'quay.io');
  });

  test('familiarName gives the short Docker form', () => {
    assert.equal(familiarName(parseReference('docker.io/library/nginx:1')), 'nginx:1');
    assert.equal(familiarName(parseReference('docker.io/user/app')), 'user/app');
    assert.equal(familiarName(parseReference('docker.io/library/a/b')), 'library/a/b');
    assert.equal(familiarName(parseReference('quay.io/a/b:v1')), 'quay.io/a/b:v1');
  });

  test('withIdentifiers swaps tag and digest and validates them', () => {
    const ref = parseReference('quay.io/a/b:v1');
    assert.equal(withIdentifiers(ref, { digest: d }).toString(), `quay.io/a/b@${d}`);
    assert.equal(withIdentifiers(ref, { tag: 'v2', digest: d }).toString(), `quay.io/a/b:v2@${d}`);
    assert.throws(() => withIdentifiers(ref, { tag: '.bad' }), /tag/);
    assert.throws(() => withIdentifiers(ref, { digest: 'sha256:zz' }), /digest/);
  });

  test('parseDigest accepts sha256/sha384/sha512 of the right length only', () => {
    assert.equal(parseDigest(d), d);
    assert.equal(parseDigest(`sha512:${'b'.repeat(128)}`), `sha512:${'b'.repeat(128)}`);
    assert.throws(() => parseDigest(`sha512:${hex64}`), /needs 128/);
    assert.throws(() => parseDigest(hex64), /algorithm:hex/);
  });
});
