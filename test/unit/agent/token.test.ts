import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isToteError } from '../../../src/api/errors.ts';
import { generateTransferKeys, signTransferToken, verifyTransferToken } from '../../../src/agentapi/index.ts';
import type { TransferClaims } from '../../../src/agentapi/index.ts';

const keys = generateTransferKeys();
const now = new Date('2026-01-01T12:00:00Z');
const digest = `sha256:${'a'.repeat(64)}`;
const claims = (overrides: Partial<TransferClaims> = {}): TransferClaims => ({
  digest,
  source: 'node-a',
  target: 'node-b',
  issuedAt: now,
  expiresAt: new Date(now.getTime() + 10 * 60_000),
  ...overrides,
});
const expect = { source: 'node-a', target: 'node-b', digest, now };

describe('transfer tokens', () => {
  it('verifies a token bound to digest, source and target', () => {
    const verified = verifyTransferToken(keys.publicKeyPem, signTransferToken(keys.privateKeyPem, claims()), expect);
    assert.equal(verified.digest, digest);
    assert.equal(verified.source, 'node-a');
    assert.equal(verified.target, 'node-b');
    assert.equal(verified.expiresAt.getTime(), now.getTime() + 10 * 60_000);
  });

  const other = generateTransferKeys();
  const cases: { name: string; token: () => string; expect?: Partial<typeof expect>; reason: string }[] = [
    {
      name: 'another key',
      token: () => signTransferToken(other.privateKeyPem, claims()),
      reason: 'TokenSignatureInvalid',
    },
    {
      name: 'expired (beyond the skew)',
      token: () =>
        signTransferToken(
          keys.privateKeyPem,
          claims({ issuedAt: new Date(now.getTime() - 120_000), expiresAt: new Date(now.getTime() - 31_000) }),
        ),
      reason: 'TokenExpired',
    },
    {
      name: 'issued in the future',
      token: () =>
        signTransferToken(
          keys.privateKeyPem,
          claims({ issuedAt: new Date(now.getTime() + 120_000), expiresAt: new Date(now.getTime() + 240_000) }),
        ),
      reason: 'TokenNotYetValid',
    },
    {
      name: 'too long-lived',
      token: () =>
        signTransferToken(keys.privateKeyPem, claims({ expiresAt: new Date(now.getTime() + 2 * 3_600_000) })),
      reason: 'TokenTooLongLived',
    },
    {
      name: 'another source',
      token: () => signTransferToken(keys.privateKeyPem, claims({ source: 'node-x' })),
      reason: 'TokenWrongSource',
    },
    {
      name: 'another target',
      token: () => signTransferToken(keys.privateKeyPem, claims({ target: 'node-x' })),
      reason: 'TokenWrongTarget',
    },
    {
      name: 'another image',
      token: () => signTransferToken(keys.privateKeyPem, claims({ digest: `sha256:${'b'.repeat(64)}` })),
      reason: 'TokenWrongImage',
    },
    { name: 'garbage', token: () => 'not-a-token', reason: 'TokenMalformed' },
    {
      name: 'tampered claims',
      token: () => {
        const [p, , s] = signTransferToken(keys.privateKeyPem, claims()).split('.');
        const forged = Buffer.from(
          JSON.stringify({ dig: digest, src: 'node-a', tgt: 'node-b', iat: 0, exp: 9e9 }),
        ).toString('base64url');
        return `${p}.${forged}.${s}`;
      },
      reason: 'TokenSignatureInvalid',
    },
  ];
  for (const c of cases) {
    it(`refuses a token with ${c.name}`, () => {
      assert.throws(
        () => verifyTransferToken(keys.publicKeyPem, c.token(), { ...expect, ...c.expect }),
        (err: unknown) => isToteError(err, 'unauthorized') && err.reason === c.reason,
      );
    });
  }

  it('accepts a token just expired within the clock skew', () => {
    const t = signTransferToken(
      keys.privateKeyPem,
      claims({ issuedAt: new Date(now.getTime() - 60_000), expiresAt: new Date(now.getTime() - 10_000) }),
    );
    assert.equal(verifyTransferToken(keys.publicKeyPem, t, expect).source, 'node-a');
  });
});
