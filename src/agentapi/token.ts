// Transfer tokens: the controller's authorisation for one node to read one image from another, for a short time.
// Signed with Ed25519 (node:crypto): the controller holds the private key; agents hold only the public key, so a
// compromised agent can verify tokens but never mint them.
//
// Wire form: `tt1.<base64url(JSON claims)>.<base64url(signature over "tt1.<claims>")>`.
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { ToteError } from '../api/errors.ts';

/** What a token allows: `target` may read the blobs of image `digest` from `source` until `expiresAt`. */
/**
 * How long a transfer token is valid: long enough for one attempt, and an Import's deadline too (it cannot outlive
 * its token); a retry gets a fresh token.
 */
export const transferTokenLifetimeMs = 30 * 60_000;

export interface TransferClaims {
  readonly digest: string;
  readonly source: string;
  readonly target: string;
  readonly issuedAt: Date;
  readonly expiresAt: Date;
}

interface WireClaims {
  dig: string;
  src: string;
  tgt: string;
  iat: number;
  exp: number;
}

const prefix = 'tt1';
/** Tokens valid for longer than this are refused whatever their signature: tokens must be short-lived. */
export const maxTokenLifetimeMs = 60 * 60_000;
/** Tolerated clock difference between controller and agents. */
export const clockSkewMs = 30_000;

const refuse = (reason: string, message: string) => new ToteError('unauthorized', reason, `transfer token ${message}`);

/** A new Ed25519 key pair in PEM (PKCS#8 private, SPKI public), for the controller's signing Secret and tests. */
export function generateTransferKeys(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** Signs `claims` with the controller's Ed25519 private key (PEM or KeyObject). */
export function signTransferToken(privateKey: string | KeyObject, claims: TransferClaims): string {
  const key = typeof privateKey === 'string' ? createPrivateKey(privateKey) : privateKey;
  const wire: WireClaims = {
    dig: claims.digest,
    src: claims.source,
    tgt: claims.target,
    iat: Math.floor(claims.issuedAt.getTime() / 1000),
    exp: Math.floor(claims.expiresAt.getTime() / 1000),
  };
  const body = `${prefix}.${Buffer.from(JSON.stringify(wire)).toString('base64url')}`;
  return `${body}.${sign(null, Buffer.from(body), key).toString('base64url')}`;
}

/** What the verifier requires of a token besides a valid signature and lifetime. */
export interface TokenExpectations {
  /** The image being read, when known (DescribePlan); ReadBlob checks blob membership in the token's image instead. */
  readonly digest?: string;
  /** The verifying node's own name. */
  readonly source: string;
  /** The node named by the caller's client certificate. */
  readonly target: string;
  readonly now?: Date;
}

/**
 * Verifies signature, lifetime and binding.
 * @throws ToteError kind `unauthorized`, reasons TokenMalformed, TokenSignatureInvalid, TokenExpired,
 *   TokenNotYetValid, TokenTooLongLived, TokenWrongSource, TokenWrongTarget, TokenWrongImage.
 */
export function verifyTransferToken(
  publicKey: string | KeyObject,
  token: string,
  expect: TokenExpectations,
): TransferClaims {
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== prefix) throw refuse('TokenMalformed', 'is malformed');
  const [, payload = '', signature = ''] = parts;
  const key = typeof publicKey === 'string' ? createPublicKey(publicKey) : publicKey;
  const valid = verify(null, Buffer.from(`${prefix}.${payload}`), key, Buffer.from(signature, 'base64url'));
  if (!valid) throw refuse('TokenSignatureInvalid', 'has an invalid signature');
  let wire: WireClaims;
  try {
    wire = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as WireClaims;
  } catch {
    throw refuse('TokenMalformed', 'has unreadable claims');
  }
  if (
    [wire.dig, wire.src, wire.tgt].some((v) => typeof v !== 'string') ||
    ![wire.iat, wire.exp].every(Number.isFinite)
  ) {
    throw refuse('TokenMalformed', 'lacks claims');
  }
  const now = (expect.now ?? new Date()).getTime();
  const claims: TransferClaims = {
    digest: wire.dig,
    source: wire.src,
    target: wire.tgt,
    issuedAt: new Date(wire.iat * 1000),
    expiresAt: new Date(wire.exp * 1000),
  };
  if (claims.expiresAt.getTime() + clockSkewMs <= now)
    throw refuse('TokenExpired', `expired at ${claims.expiresAt.toISOString()}`);
  if (claims.issuedAt.getTime() - clockSkewMs > now) throw refuse('TokenNotYetValid', 'is issued in the future');
  if (claims.expiresAt.getTime() - claims.issuedAt.getTime() > maxTokenLifetimeMs) {
    throw refuse('TokenTooLongLived', `lives longer than ${maxTokenLifetimeMs / 60_000} minutes`);
  }
  if (claims.source !== expect.source)
    throw refuse('TokenWrongSource', `is for source ${claims.source}, not ${expect.source}`);
  if (claims.target !== expect.target)
    throw refuse('TokenWrongTarget', `is for target ${claims.target}, not ${expect.target}`);
  if (expect.digest !== undefined && claims.digest !== expect.digest) {
    throw refuse('TokenWrongImage', `is for image ${claims.digest}, not ${expect.digest}`);
  }
  return claims;
}
