// Certificate files re-read while the process runs: a renewed Secret's files replace the material, a half-written or
// mismatched set is reported and the current material kept.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readTlsFiles, reloadTlsFiles, RenewableTls } from '../../../src/agentapi/index.ts';
import { selfSignedP256 } from '../../support/self-signed.ts';
import type { TlsMaterial } from '../../../src/agentapi/index.ts';

describe('reloadTlsFiles', () => {
  let dir: string;
  const files = () => ({ ca: join(dir, 'ca.crt'), cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') });
  /** A fresh self-signed key pair written to `name`.crt/.key. */
  const pair = (name: string) => {
    const { certPem, keyPem } = selfSignedP256(name);
    return { cert: Buffer.from(certPem), key: Buffer.from(keyPem) };
  };
  const install = (p: { cert: Buffer; key: Buffer }) => {
    writeFileSync(files().cert, p.cert);
    writeFileSync(files().key, p.key);
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tote-tls-files-'));
    const first = pair('first');
    writeFileSync(files().ca, first.cert);
    install(first);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('replaces the material when the files change, and keeps it when a key does not match its certificate', async () => {
    const tls = new RenewableTls(readTlsFiles(files()));
    // The test writes a certificate and its key one after the other, so a poll may see a half-written pair (the
    // kubelet swaps a Secret's files atomically; a hand edit does not): wait for the outcome each step is about.
    const waiting: { reloaded?: () => void; refused?: (message: string) => void } = {};
    const reload = reloadTlsFiles(files(), tls, {
      intervalMs: 20,
      onReload: () => waiting.reloaded?.(),
      onError: (message) => waiting.refused?.(message),
    });
    const reloaded = () => new Promise<void>((resolve) => (waiting.reloaded = resolve));
    const refused = () => new Promise<string>((resolve) => (waiting.refused = resolve));
    try {
      const second = pair('second');
      const secondLoaded = reloaded();
      install(second);
      await secondLoaded;
      assert.ok(tls.current.cert.equals(second.cert) && tls.current.key.equals(second.key));

      const third = pair('third');
      const mismatch = refused();
      waiting.reloaded = () => assert.fail('a key that does not match its certificate was loaded');
      install({ cert: third.cert, key: second.key });
      assert.match(await mismatch, /not reloaded, the current ones stay/);
      assert.ok(tls.current.cert.equals(second.cert), 'the working pair stays');

      const replaced: TlsMaterial[] = [];
      tls.onReplace((m) => replaced.push(m));
      const thirdLoaded = reloaded();
      install(third);
      await thirdLoaded;
      assert.equal(replaced.length, 1);
      assert.ok(tls.current.key.equals(third.key));
    } finally {
      reload.stop();
    }
  });
});
