// Registry credentials from Kubernetes image pull Secrets. Values read here are secrets: no message, log line or error
// built in this file contains a username, password or token — only host keys and field names.
import { ToteError } from '../api/errors.ts';

/** What to present to a registry. */
export type Credential =
  /** HTTP basic, and the same pair for a bearer token server. */
  | { readonly kind: 'basic'; readonly username: string; readonly password: string }
  /** An OAuth2 refresh token (`identitytoken` in a Docker config), exchanged at the token server for access tokens. */
  | { readonly kind: 'identity-token'; readonly username?: string; readonly identityToken: string }
  /** A bearer token to send to the registry as is (`registrytoken` in a Docker config). */
  | { readonly kind: 'registry-token'; readonly token: string };

/**
 * Finds the credential for a registry. `domain` is the reference's domain (`docker.io`, `registry.example:5000`);
 * `repository` its path, used by keys that carry a path prefix. Returns undefined for anonymous access.
 */
export type CredentialLookup = (domain: string, repository?: string) => Credential | undefined;

/** The parts of a Kubernetes Secret this module reads (a V1Secret fits). `data` values are base64, as the API gives. */
export interface SecretLike {
  readonly metadata?: { readonly name?: string; readonly namespace?: string };
  readonly type?: string;
  readonly data?: Readonly<Record<string, string>>;
}

/** One `auths` entry of a Docker config file. */
export interface DockerAuthEntry {
  readonly auth?: string;
  readonly username?: string;
  readonly password?: string;
  readonly identitytoken?: string;
  readonly registrytoken?: string;
}

/** The decoded `.dockerconfigjson`. */
export interface DockerConfigJson {
  readonly auths?: Readonly<Record<string, DockerAuthEntry>>;
}

export const dockerConfigJsonSecretType = 'kubernetes.io/dockerconfigjson';
export const dockerCfgSecretType = 'kubernetes.io/dockercfg';

const invalid = (where: string, why: string): ToteError =>
  new ToteError('terminal', 'SecretInvalid', `${where} ${why}`);

/** Docker Hub answers to several names; credentials for any of them apply to all. */
const dockerHubNames = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);

interface Entry {
  /** host[:port], lowercase; may start with `*.` */
  readonly host: string;
  /** Repository path prefix, without slashes at either end; '' for the whole registry. */
  readonly pathPrefix: string;
  readonly credential: Credential | undefined;
}

/**
 * Reads a `kubernetes.io/dockerconfigjson` Secret (and the legacy `kubernetes.io/dockercfg`, whose content is the
 * `auths` map itself, as the kubelet accepts both) and returns a credential lookup.
 * @throws ToteError terminal `SecretInvalid` when the Secret has another type, lacks its key, or does not decode.
 */
export function credentialsFromSecret(secret: SecretLike): CredentialLookup {
  const where = `Secret ${secret.metadata?.namespace ?? ''}${secret.metadata?.namespace !== undefined ? '/' : ''}${secret.metadata?.name ?? '(unnamed)'}`;
  const key =
    secret.type === dockerConfigJsonSecretType
      ? '.dockerconfigjson'
      : secret.type === dockerCfgSecretType
        ? '.dockercfg'
        : undefined;
  if (key === undefined) {
    throw invalid(
      where,
      `has type ${JSON.stringify(secret.type ?? '')}; registry credentials must be a ${dockerConfigJsonSecretType} Secret`,
    );
  }
  const encoded = secret.data?.[key];
  if (encoded === undefined || encoded === '') throw invalid(where, `has no ${key} key`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(encoded, 'base64').toString('utf8'));
  } catch {
    throw invalid(where, `has a ${key} that is not base64-encoded JSON`);
  }
  const config = key === '.dockercfg' ? { auths: parsed } : parsed;
  return credentialsFromDockerConfig(config, where);
}

/**
 * Builds a lookup from a decoded Docker config (`{"auths": {...}}`). Keys may be `host`, `host:port`, a URL
 * (`https://index.docker.io/v1/`), a wildcard `*.example.com`, or `host/path` (applies to repositories under the path,
 * the most specific key winning). Within an entry, `auth` (base64 `user:password`) wins over `username`/`password`;
 * `identitytoken` makes it a refresh-token credential.
 * @param where names the source in error messages.
 * @throws ToteError terminal `SecretInvalid`.
 */
export function credentialsFromDockerConfig(config: unknown, where = 'Docker config'): CredentialLookup {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw invalid(where, 'is not a JSON object');
  }
  const auths = (config as { auths?: unknown }).auths;
  if (auths === undefined) throw invalid(where, 'has no "auths" object');
  if (typeof auths !== 'object' || auths === null || Array.isArray(auths)) {
    throw invalid(where, 'has an "auths" that is not an object');
  }
  const entries: Entry[] = [];
  for (const [key, value] of Object.entries(auths as Record<string, unknown>)) {
    const { host, pathPrefix } = parseKey(key);
    if (host === '') throw invalid(where, `has an auths key ${JSON.stringify(key)} that names no registry host`);
    entries.push({ host, pathPrefix, credential: parseEntry(value, `${where}: auths[${JSON.stringify(key)}]`) });
  }
  // Most specific first: longer path prefixes, then exact hosts before wildcards.
  entries.sort(
    (a, b) =>
      b.pathPrefix.length - a.pathPrefix.length || Number(a.host.startsWith('*.')) - Number(b.host.startsWith('*.')),
  );
  return (domain, repository = '') => {
    const wanted = canonicalHost(domain);
    for (const entry of entries) {
      if (!hostMatches(entry.host, wanted)) continue;
      if (
        entry.pathPrefix !== '' &&
        repository !== entry.pathPrefix &&
        !repository.startsWith(`${entry.pathPrefix}/`)
      ) {
        continue;
      }
      return entry.credential;
    }
    return undefined;
  };
}

/** `https://Index.Docker.io/v1/` → docker.io; `reg.example:5000/team` → reg.example:5000 + prefix `team`. */
function parseKey(key: string): { host: string; pathPrefix: string } {
  let rest = key.trim().replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  const slash = rest.indexOf('/');
  let path = '';
  if (slash >= 0) {
    path = rest.slice(slash + 1);
    rest = rest.slice(0, slash);
  }
  // `/v1/` and `/v2/` are API roots from old `docker login` keys, not repository prefixes.
  path = path.replace(/^v[12]\/?$/, '').replace(/^\/+|\/+$/g, '');
  return { host: canonicalHost(rest), pathPrefix: path };
}

function canonicalHost(host: string): string {
  const lower = host.toLowerCase();
  return dockerHubNames.has(lower) ? 'docker.io' : lower;
}

/** A `*.` wildcard stands for exactly one DNS label, as in the kubelet's matching. */
function hostMatches(pattern: string, host: string): boolean {
  if (!pattern.startsWith('*.')) return pattern === host;
  const dot = host.indexOf('.');
  return dot > 0 && host.slice(dot + 1) === pattern.slice(2);
}

function parseEntry(value: unknown, where: string): Credential | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(where, 'is not an object');
  const entry = value as Record<string, unknown>;
  const str = (field: string): string | undefined => {
    const v = entry[field];
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') throw invalid(where, `has a "${field}" that is not a string`);
    return v;
  };
  let username = str('username');
  let password = str('password');
  const auth = str('auth');
  if (auth !== undefined) {
    const decoded = Buffer.from(auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0 || !/^[A-Za-z0-9+/=\s_-]*$/.test(auth)) {
      throw invalid(where, 'has an "auth" that is not base64 of "username:password"');
    }
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  const identityToken = str('identitytoken');
  if (identityToken !== undefined) {
    return { kind: 'identity-token', identityToken, ...(username !== undefined ? { username } : {}) };
  }
  const registryToken = str('registrytoken');
  if (registryToken !== undefined) return { kind: 'registry-token', token: registryToken };
  if (username !== undefined || password !== undefined) {
    return { kind: 'basic', username: username ?? '', password: password ?? '' };
  }
  return undefined;
}

/** A lookup that always answers the same credential: for a policy's backup registry given one user and password. */
export const staticCredentials =
  (credential: Credential | undefined): CredentialLookup =>
  () =>
    credential;
