import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ToteError } from '../../../src/api/errors.ts';
import { loadKubeConfig } from '../../../src/runtime/kubeconfig.ts';

const dir = mkdtempSync(join(tmpdir(), 'tote-kubeconfig-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
/** Writes a file under the test directory and returns its path. */
function write(name: string, content: string | object, mode = 0o600): string {
  const path = join(dir, `${files++}-${name}`);
  writeFileSync(path, typeof content === 'string' ? content : stringify(content), { mode });
  return path;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** A kubeconfig with one cluster, user and context; overrides replace whole sections. */
function kubeconfig(
  overrides: { cluster?: object; user?: object; context?: object; current?: string | null } = {},
): object {
  return {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'c',
        cluster: overrides.cluster ?? { server: 'https://10.0.0.1:6443', 'certificate-authority-data': b64('CA') },
      },
    ],
    users: [
      { name: 'u', user: overrides.user ?? { 'client-certificate-data': b64('CERT'), 'client-key-data': b64('KEY') } },
    ],
    contexts: [{ name: 'ctx', context: overrides.context ?? { cluster: 'c', user: 'u', namespace: 'team' } }],
    ...(overrides.current === null ? {} : { 'current-context': overrides.current ?? 'ctx' }),
  };
}

function refusal(fn: () => unknown): ToteError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ToteError, String(err));
    assert.equal(err.kind, 'terminal');
    return err;
  }
  assert.fail('expected a refusal');
}

describe('loadKubeConfig', () => {
  it('reads inline certificates, the server and the context namespace', async () => {
    const kc = loadKubeConfig(write('config', kubeconfig()), {});
    assert.equal(kc.server, 'https://10.0.0.1:6443');
    assert.equal(kc.namespace, 'team');
    const c = await kc.credentials();
    assert.deepEqual([c.ca?.toString(), c.cert?.toString(), c.key?.toString()], ['CA', 'CERT', 'KEY']);
    assert.equal(c.authorization, undefined);
    assert.equal(c.verifyServer, true);
  });

  it('resolves relative file paths against the kubeconfig, and re-reads them only after a minute', async () => {
    const sub = join(dir, 'relative');
    mkdirSync(sub);
    writeFileSync(join(sub, 'ca.crt'), 'CA-1');
    writeFileSync(join(sub, 'token'), 'token-1\n');
    const file = join(sub, 'config');
    writeFileSync(
      file,
      stringify(
        kubeconfig({
          cluster: { server: 'https://k:6443', 'certificate-authority': 'ca.crt' },
          user: { tokenFile: 'token' },
        }),
      ),
    );
    const kc = loadKubeConfig(file, {});
    const t0 = Date.now();
    const first = await kc.credentials(t0);
    assert.deepEqual([first.ca?.toString(), first.authorization], ['CA-1', 'Bearer token-1']);
    writeFileSync(join(sub, 'ca.crt'), 'CA-2');
    writeFileSync(join(sub, 'token'), 'token-2');
    assert.equal((await kc.credentials(t0 + 59_000)).authorization, 'Bearer token-1', 'cached within the minute');
    const later = await kc.credentials(t0 + 61_000);
    assert.deepEqual([later.ca?.toString(), later.authorization], ['CA-2', 'Bearer token-2']);
    assert.notEqual(later.tlsIdentity, first.tlsIdentity, 'a new CA means new connections');
    kc.invalidate();
    writeFileSync(join(sub, 'token'), 'token-3');
    assert.equal((await kc.credentials(t0 + 62_000)).authorization, 'Bearer token-3', 'invalidate() forces a re-read');
  });

  it('merges a $KUBECONFIG list as kubectl does: the first definition wins, missing files are skipped', () => {
    const first = write('first', {
      'current-context': 'ctx',
      clusters: [{ name: 'c', cluster: { server: 'https://first:1' } }],
    });
    const second = write('second', kubeconfig({ cluster: { server: 'https://second:2' }, current: 'other' }));
    const kc = loadKubeConfig(undefined, { KUBECONFIG: `${join(dir, 'absent')}:${first}:${second}` });
    assert.equal(kc.server, 'https://first:1', 'cluster c from the first file');
    assert.equal(kc.namespace, 'team', 'context ctx from the second file');
    assert.equal(kc.source, `${join(dir, 'absent')}:${first}:${second}`);
  });

  it('falls back to ~/.kube/config, then to the in-cluster service account', async () => {
    const home = join(dir, 'home');
    mkdirSync(join(home, '.kube'), { recursive: true });
    writeFileSync(join(home, '.kube', 'config'), stringify(kubeconfig()));
    assert.equal(loadKubeConfig(undefined, { HOME: home }).server, 'https://10.0.0.1:6443');

    const sa = join(dir, 'serviceaccount');
    mkdirSync(sa);
    writeFileSync(join(sa, 'token'), 'projected');
    writeFileSync(join(sa, 'ca.crt'), 'CLUSTER-CA');
    writeFileSync(join(sa, 'namespace'), 'tote-system\n');
    const env = { HOME: join(dir, 'nowhere'), KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' };
    const kc = loadKubeConfig(undefined, env, sa);
    assert.deepEqual([kc.server, kc.namespace, kc.source], ['https://[fd00::1]:443', 'tote-system', 'in-cluster']);
    const c = await kc.credentials();
    assert.deepEqual([c.authorization, c.ca?.toString()], ['Bearer projected', 'CLUSTER-CA']);
    assert.ok(kc.refreshable, 'the projected token rotates: a 401 re-reads it');

    const none = refusal(() => loadKubeConfig(undefined, { HOME: join(dir, 'nowhere') }, sa));
    assert.equal(none.reason, 'NoKubeconfig');
    assert.match(none.message, /--kubeconfig/);
  });

  const refused: [string, object | string, RegExp][] = [
    ['not YAML', '{ clusters: [', /not YAML/],
    ['no current context', kubeconfig({ current: null }), /has no current-context/],
    ['an undefined context', kubeconfig({ current: 'elsewhere' }), /current-context "elsewhere" is not defined/],
    [
      'an undefined cluster',
      kubeconfig({ context: { cluster: 'x', user: 'u' } }),
      /names cluster "x", which is not defined/,
    ],
    ['an undefined user', kubeconfig({ context: { cluster: 'c', user: 'x' } }), /names user "x", which is not defined/],
    ['a cluster without server', kubeconfig({ cluster: {} }), /cluster "c" server is required/],
    [
      'a server that is not a URL',
      kubeconfig({ cluster: { server: 'k8s:6443:x' } }),
      /cluster "c" server .* (not a URL|must be an https)/,
    ],
    [
      'a ftp server',
      kubeconfig({ cluster: { server: 'ftp://k8s' } }),
      /cluster "c" server "ftp:\/\/k8s" must be an https/,
    ],
    [
      'a proxy',
      kubeconfig({ cluster: { server: 'https://k', 'proxy-url': 'http://p' } }),
      /cluster "c" proxy-url is not supported/,
    ],
    [
      'a non-boolean skip-verify',
      kubeconfig({ cluster: { server: 'https://k', 'insecure-skip-tls-verify': 'yes' } }),
      /insecure-skip-tls-verify must be true or false/,
    ],
    [
      'bad base64',
      kubeconfig({ cluster: { server: 'https://k', 'certificate-authority-data': 'not base64!' } }),
      /certificate-authority-data is not valid base64/,
    ],
    [
      'a certificate without key',
      kubeconfig({ user: { 'client-certificate-data': b64('C') } }),
      /user "u" client-key is required with the other half/,
    ],
    [
      'an auth-provider',
      kubeconfig({ user: { 'auth-provider': { name: 'oidc' } } }),
      /user "u" auth-provider is not supported .* exec credential plugin/,
    ],
    ['basic auth', kubeconfig({ user: { username: 'admin', password: 'x' } }), /user "u" username is not supported/],
    [
      'an old exec API',
      kubeconfig({ user: { exec: { apiVersion: 'client.authentication.k8s.io/v1alpha1', command: 'x' } } }),
      /exec.apiVersion .* not supported/,
    ],
    [
      'exec without command',
      kubeconfig({ user: { exec: { apiVersion: 'client.authentication.k8s.io/v1' } } }),
      /exec.command is required/,
    ],
    [
      'exec args not strings',
      kubeconfig({ user: { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'x', args: [1] } } }),
      /exec.args must be a list of strings/,
    ],
    ['a token that is not a string', kubeconfig({ user: { token: 42 } }), /user "u" token must be a string/],
    ['clusters not a list', { clusters: { c: {} }, 'current-context': 'ctx' }, /clusters must be a list/],
    ['an unnamed context', { contexts: [{ context: {} }], 'current-context': 'ctx' }, /contexts\[0\].name is required/],
  ];
  for (const [what, content, message] of refused)
    it(`refuses ${what}, naming the file and field`, () => {
      const file = write('bad', content);
      const err = refusal(() => loadKubeConfig(file, {}));
      assert.match(err.message, message);
      assert.ok(err.message.includes(file), err.message);
    });

  it('refuses a file that is missing or unreadable, saying which', () => {
    const err = refusal(() => loadKubeConfig(join(dir, 'missing'), {}));
    assert.equal(err.reason, 'KubeconfigUnreadable');
    assert.match(err.message, /missing.*ENOENT/);
  });

  it('reports an unreadable certificate file when credentials are resolved, naming the field', async () => {
    const kc = loadKubeConfig(
      write('config', kubeconfig({ cluster: { server: 'https://k', 'certificate-authority': '/nonexistent/ca.crt' } })),
      {},
    );
    await assert.rejects(kc.credentials(), /certificate-authority \/nonexistent\/ca.crt: ENOENT/);
  });
});

describe('exec credential plugins', () => {
  /** A plugin script: prints what body() returns (a shell snippet) after checking it runs non-interactively. */
  function plugin(script: string): string {
    return write('plugin.sh', `#!/bin/sh\n${script}\n`, 0o700);
  }
  const v1 = 'client.authentication.k8s.io/v1';
  const withExec = (exec: object) =>
    loadKubeConfig(write('config', kubeconfig({ user: { exec: { apiVersion: v1, ...exec } } })), {});

  it('runs the plugin with its args, env and exec info, and uses the token until shortly before it expires', async () => {
    const counter = join(dir, 'exec-count');
    writeFileSync(counter, '');
    const expiry = new Date(Date.now() + 120_000).toISOString();
    const script = plugin(`echo run >> ${counter}
case "$KUBERNETES_EXEC_INFO" in *'"interactive":false'*) ;; *) exit 3 ;; esac
echo "{\\"apiVersion\\":\\"${v1}\\",\\"kind\\":\\"ExecCredential\\",\\"status\\":{\\"token\\":\\"$1-$SUFFIX\\",\\"expirationTimestamp\\":\\"${expiry}\\"}}"`);
    const kc = withExec({ command: script, args: ['tok'], env: [{ name: 'SUFFIX', value: 'en' }] });
    const now = Date.now();
    assert.equal((await kc.credentials(now)).authorization, 'Bearer tok-en');
    await Promise.all([kc.credentials(now + 1000), kc.credentials(now + 2000)]);
    assert.equal(readFileSync(counter, 'utf8'), 'run\n', 'one run serves while fresh');
    await kc.credentials(now + 95_000);
    assert.equal(readFileSync(counter, 'utf8'), 'run\nrun\n', 'renewed 30 s before expiry');
    assert.ok(kc.refreshable);
  });

  it('accepts a client certificate from the plugin', async () => {
    const script = plugin(
      `echo '{"apiVersion":"${v1}","kind":"ExecCredential","status":{"clientCertificateData":"PEM-CERT","clientKeyData":"PEM-KEY"}}'`,
    );
    const c = await withExec({ command: script }).credentials();
    assert.deepEqual([c.cert?.toString(), c.key?.toString(), c.authorization], ['PEM-CERT', 'PEM-KEY', undefined]);
  });

  const failing: [string, string, RegExp][] = [
    [
      'exits non-zero',
      'echo "{\\"status\\":{\\"token\\":\\"SECRET\\"}}"; echo "login expired" >&2; exit 2',
      /exited with 2: login expired/,
    ],
    ['prints something that is not JSON', 'echo hello', /output is not JSON/],
    [
      'prints the wrong apiVersion',
      `echo '{"apiVersion":"v9","kind":"ExecCredential","status":{"token":"t"}}'`,
      /apiVersion client.authentication.k8s.io\/v1/,
    ],
    [
      'prints no credential',
      `echo '{"apiVersion":"${v1}","kind":"ExecCredential","status":{}}'`,
      /must carry a token or both/,
    ],
    [
      'prints a bad expiry',
      `echo '{"apiVersion":"${v1}","kind":"ExecCredential","status":{"token":"t","expirationTimestamp":"soon"}}'`,
      /expirationTimestamp is not RFC 3339/,
    ],
  ];
  for (const [what, body, message] of failing)
    it(`refuses a plugin that ${what}, without quoting its output`, async () => {
      const err = await withExec({ command: plugin(body) })
        .credentials()
        .then(
          () => assert.fail('expected a refusal'),
          (e: unknown) => e,
        );
      assert.ok(err instanceof ToteError && err.reason === 'ExecPluginFailed', String(err));
      assert.match(err.message, message);
      assert.doesNotMatch(err.message, /SECRET/);
    });

  it('refuses a missing plugin with its install hint', async () => {
    const kc = withExec({ command: 'tote-no-such-plugin', installHint: 'install it with: apt-get install x' });
    await assert.rejects(kc.credentials(), /tote-no-such-plugin: spawn .*ENOENT; install it with: apt-get install x/);
  });
});
