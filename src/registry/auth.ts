// Registry authentication: anonymous, HTTP basic, and the Docker/OCI bearer token flow (a 401 with
// `WWW-Authenticate: Bearer realm=…,service=…,scope=…`, a token fetched from the realm, cached per scope until it
// expires).
//
// Concurrency: one Authenticator is shared by every request of a client. Token fetches for the same cache key are
// de-duplicated through a map of in-flight promises, so a push that starts many blob uploads at once asks the token
// server once. Nothing here logs; credentials and tokens never appear in error messages.
import { ToteError } from '../api/errors.ts';
import type { Credential, CredentialLookup } from './credentials.ts';
import { errorFromResponse } from './errors.ts';
import type { HttpTransport } from './http.ts';

/** One challenge of a WWW-Authenticate header. Scheme lowercase; parameter names lowercase. */
export interface Challenge {
  readonly scheme: string;
  readonly params: Readonly<Record<string, string>>;
}

/**
 * Parses WWW-Authenticate header values (RFC 7235: several challenges per value, comma-separated parameters, quoted
 * strings with backslash escapes). Malformed tails are dropped rather than thrown: a registry's odd header must not
 * hide the error status that came with it.
 */
export function parseChallenges(values: string | readonly string[]): Challenge[] {
  const list = typeof values === 'string' ? [values] : values;
  const out: Challenge[] = [];
  for (const value of list) parseOne(value, out);
  return out;
}

const tokenChar = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;

function parseOne(input: string, out: Challenge[]): void {
  let i = 0;
  const skipSpace = () => {
    while (i < input.length && (input[i] === ' ' || input[i] === '\t')) i++;
  };
  const readToken = (): string => {
    const start = i;
    while (i < input.length && tokenChar.test(input[i]!)) i++;
    return input.slice(start, i);
  };
  let current: { scheme: string; params: Record<string, string> } | undefined;
  // True right after a scheme name: a bare word there is token68 credentials, not a new scheme.
  let afterScheme = false;
  while (i < input.length) {
    skipSpace();
    if (input[i] === ',') {
      i++;
      afterScheme = false;
      continue;
    }
    const word = readToken();
    if (word === '') return; // unparseable: keep what we have
    skipSpace();
    if (input[i] === '=' && current !== undefined && input[i + 1] !== '=') {
      i++;
      skipSpace();
      let value = '';
      if (input[i] === '"') {
        i++;
        while (i < input.length && input[i] !== '"') {
          if (input[i] === '\\' && i + 1 < input.length) i++;
          value += input[i];
          i++;
        }
        i++; // closing quote
      } else {
        value = readToken();
      }
      current.params[word.toLowerCase()] = value;
      afterScheme = false;
      continue;
    }
    if (afterScheme) {
      while (input[i] === '=') i++; // token68 padding
      afterScheme = false;
      continue;
    }
    current = { scheme: word.toLowerCase(), params: {} };
    out.push(current);
    afterScheme = true;
  }
}

/** What a request needs access to: e.g. `repository:team/app:pull,push`. */
export const repositoryScope = (path: string, actions: readonly string[]): string =>
  `repository:${path}:${actions.join(',')}`;

/** Options of an Authenticator. */
export interface AuthenticatorOptions {
  readonly transport: HttpTransport;
  /** Where credentials come from; none means anonymous. */
  readonly credentials?: CredentialLookup;
  /** Deadline for a token request. */
  readonly timeoutMs: number;
  /** Milliseconds since the epoch; injected by tests to expire tokens. */
  readonly now?: () => number;
  /** OAuth2 client_id sent with refresh-token grants. */
  readonly clientId?: string;
}

/** Where a request goes and what it needs: the key for credentials and for cached tokens. */
export interface AuthTarget {
  /** API host (`registry-1.docker.io`, `127.0.0.1:5000`). */
  readonly apiHost: string;
  /** The reference's domain for credential lookup (`docker.io`). */
  readonly domain: string;
  /** The repository path, for credentials keyed by path prefix. */
  readonly repository: string;
  /** Scopes needed, e.g. `[repositoryScope('team/app', ['pull'])]`. */
  readonly scopes: readonly string[];
}

interface CachedToken {
  readonly token: string;
  /** Local clock time after which the token is not used. */
  readonly expiresAt: number;
}

/** When the token server says nothing about lifetime (the Docker token spec's default). */
const defaultTokenLifetimeSeconds = 60;

/**
 * Produces Authorization headers for registry requests and answers 401 challenges. Learns per API host which scheme
 * the registry wants, so later requests (including streamed uploads, which cannot be replayed) carry auth up front.
 */
export class Authenticator {
  readonly #options: AuthenticatorOptions;
  readonly #now: () => number;
  /** apiHost → the last challenge that host sent. */
  readonly #challenges = new Map<string, Challenge>();
  readonly #tokens = new Map<string, CachedToken>();
  readonly #inflight = new Map<string, Promise<CachedToken>>();
  /** Token requests made, for tests and metrics. */
  tokenRequests = 0;

  constructor(options: AuthenticatorOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * The Authorization header value for a request, from what the host asked before (undefined before any challenge,
   * or when anonymous access worked). May fetch a token when the cached one expired.
   */
  async authorization(target: AuthTarget, signal?: AbortSignal): Promise<string | undefined> {
    const challenge = this.#challenges.get(target.apiHost);
    if (challenge === undefined) return undefined;
    return this.#answer(challenge, target, false, signal);
  }

  /**
   * Handles a 401: remembers the challenge and returns the header to retry with.
   * @param rejected the header the 401 answered, if any: a rejected cached token is dropped and fetched anew.
   * @throws ToteError unauthorized when there is no usable credential or the token server refuses.
   */
  async challenged(
    target: AuthTarget,
    wwwAuthenticate: readonly string[],
    rejected: string | undefined,
    signal?: AbortSignal,
  ): Promise<string> {
    const challenges = parseChallenges(wwwAuthenticate);
    const challenge = challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
    if (challenge === undefined) {
      throw new ToteError(
        'unauthorized',
        'RegistryUnauthorized',
        `registry ${target.apiHost} refused access and sent no usable challenge (WWW-Authenticate: ${JSON.stringify(wwwAuthenticate.join(', '))})`,
      );
    }
    this.#challenges.set(target.apiHost, challenge);
    const header = await this.#answer(challenge, target, rejected !== undefined, signal);
    if (header === undefined) {
      throw new ToteError(
        'unauthorized',
        'RegistryCredentialsRequired',
        `registry ${target.apiHost} requires authentication and no credentials are configured for ${target.domain}`,
      );
    }
    if (header === rejected) {
      throw new ToteError(
        'unauthorized',
        'RegistryCredentialsRejected',
        `registry ${target.apiHost} rejected the credentials configured for ${target.domain}`,
      );
    }
    return header;
  }

  async #answer(
    challenge: Challenge,
    target: AuthTarget,
    refresh: boolean,
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    const credential = this.#options.credentials?.(target.domain, target.repository);
    if (challenge.scheme === 'basic') {
      if (credential?.kind !== 'basic') return undefined;
      return `Basic ${Buffer.from(`${credential.username}:${credential.password}`).toString('base64')}`;
    }
    if (credential?.kind === 'registry-token') return `Bearer ${credential.token}`;
    const realm = challenge.params.realm;
    if (realm === undefined || realm === '') {
      throw new ToteError(
        'unauthorized',
        'RegistryBadChallenge',
        `registry ${target.apiHost} sent a Bearer challenge without a realm`,
      );
    }
    const service = challenge.params.service ?? '';
    // The scopes the registry names and the ones this operation needs: a mount needs pull on the source repository
    // too, which the registry's challenge for the target alone does not mention.
    const scopes = [
      ...new Set([...(challenge.params.scope ?? '').split(' ').filter((s) => s !== ''), ...target.scopes]),
    ];
    scopes.sort();
    const key = JSON.stringify([realm, service, scopes, credentialIdentity(credential)]);
    const now = this.#now();
    const cached = this.#tokens.get(key);
    if (cached !== undefined && !refresh && now < cached.expiresAt) return `Bearer ${cached.token}`;
    if (refresh) this.#tokens.delete(key);
    let pending = this.#inflight.get(key);
    if (pending === undefined) {
      pending = this.#fetchToken(realm, service, scopes, credential, target, signal).finally(() =>
        this.#inflight.delete(key),
      );
      this.#inflight.set(key, pending);
    }
    const token = await pending;
    this.#tokens.set(key, token);
    return `Bearer ${token.token}`;
  }

  async #fetchToken(
    realm: string,
    service: string,
    scopes: readonly string[],
    credential: Credential | undefined,
    target: AuthTarget,
    signal?: AbortSignal,
  ): Promise<CachedToken> {
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new ToteError('unauthorized', 'RegistryBadChallenge', `registry ${target.apiHost} sent an invalid realm`);
    }
    this.tokenRequests++;
    const what = `token request to ${url.host} for ${target.apiHost}`;
    const issuedAt = this.#now();
    let response;
    if (credential?.kind === 'identity-token') {
      // OAuth2 refresh-token grant, as `docker login` identity tokens require.
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        service,
        client_id: this.#options.clientId ?? 'tote',
        refresh_token: credential.identityToken,
        scope: scopes.join(' '),
      });
      response = await this.#options.transport.request({
        method: 'POST',
        url,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: Buffer.from(form.toString()),
        timeoutMs: this.#options.timeoutMs,
        what,
        ...(signal !== undefined ? { signal } : {}),
      });
    } else {
      if (service !== '') url.searchParams.set('service', service);
      for (const scope of scopes) url.searchParams.append('scope', scope);
      const headers: Record<string, string> = {};
      if (credential?.kind === 'basic') {
        url.searchParams.set('account', credential.username);
        headers.authorization = `Basic ${Buffer.from(`${credential.username}:${credential.password}`).toString('base64')}`;
      }
      response = await this.#options.transport.request({
        method: 'GET',
        url,
        headers,
        timeoutMs: this.#options.timeoutMs,
        what,
        ...(signal !== undefined ? { signal } : {}),
      });
    }
    const body = await response.text();
    if (response.status !== 200) throw errorFromResponse(response.status, body, what);
    let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      parsed = JSON.parse(body) as typeof parsed;
    } catch {
      throw new ToteError('transient', 'RegistryBadToken', `${what}: answer is not JSON`);
    }
    const token =
      typeof parsed.token === 'string' && parsed.token !== ''
        ? parsed.token
        : typeof parsed.access_token === 'string'
          ? parsed.access_token
          : '';
    if (token === '') throw new ToteError('transient', 'RegistryBadToken', `${what}: answer has no token`);
    const lifetime =
      typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : defaultTokenLifetimeSeconds;
    // Expiry is counted on our clock from when we asked, not from the server's issued_at, so clock skew between
    // hosts cannot make us use a stale token; the margin covers the request's own latency.
    const margin = Math.min(10, lifetime / 10) * 1000;
    return { token, expiresAt: issuedAt + lifetime * 1000 - margin };
  }
}

/** Distinguishes cache entries by credential without keeping the secret itself in the key. */
function credentialIdentity(credential: Credential | undefined): string {
  if (credential === undefined) return 'anonymous';
  if (credential.kind === 'basic') return `basic:${credential.username}`;
  if (credential.kind === 'identity-token') return `identity:${credential.username ?? ''}`;
  return 'registry-token';
}
