// Image references parsed and normalised the way containerd and Docker do it (github.com/distribution/reference:
// ParseNormalizedNamed / ParseDockerRef), so that tote names exactly the image the kubelet asked for. The grammar is
// re-expressed here from the published rules, not copied.
import { ToteError } from '../api/errors.ts';

/** A parsed, normalised image reference. Immutable. */
export interface ImageReference {
  /** Registry host as written after normalisation, with its port if any: `docker.io`, `localhost:5000`, `[::1]:5000`. */
  readonly domain: string;
  /** Repository path inside the registry: `library/nginx`, `team/app`. Always lowercase. */
  readonly path: string;
  /** `domain/path`, the fully qualified repository name. */
  readonly name: string;
  /** The tag when one was written (none is implied here; see `defaultTag`). */
  readonly tag?: string;
  /** The digest when one was written, `algorithm:hex`. */
  readonly digest?: string;
  /**
   * The host to talk the Distribution API to: `registry-1.docker.io` for Docker Hub (`docker.io` and
   * `index.docker.io` are names, not API endpoints), the domain itself otherwise.
   */
  readonly apiHost: string;
  /**
   * What to ask the registry for: the digest when there is one (a digest wins over a tag, as in containerd), else the
   * tag, else `latest`.
   */
  readonly identifier: string;
  /** The canonical string: `name[:tag][@digest]`. */
  toString(): string;
}

export const defaultDomain = 'docker.io';
export const defaultTag = 'latest';
/** Docker Hub's legacy index name; normalised to `docker.io`. */
const legacyDefaultDomain = 'index.docker.io';
/** The host that actually serves the Docker Hub Distribution API. */
const dockerHubApiHost = 'registry-1.docker.io';
const officialRepoPrefix = 'library/';
/** Limit on the repository path (not counting the domain), as in distribution/reference. */
export const maxRepositoryNameLength = 255;

// The grammar, as published in distribution/reference's reference.go comment.
const alphanumeric = '[a-z0-9]+';
const separator = '(?:[._]|__|[-]+)';
const pathComponent = `${alphanumeric}(?:${separator}${alphanumeric})*`;
const domainNameComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const ipv6address = '\\[(?:[a-fA-F0-9:]+)\\]';
const domainName = `${domainNameComponent}(?:\\.${domainNameComponent})*`;
const host = `(?:${domainName}|${ipv6address})`;
const domainAndPort = `${host}(?::[0-9]+)?`;
const tagPattern = '[\\w][\\w.-]{0,127}';
const digestPattern = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}';
const remoteName = `${pathComponent}(?:/${pathComponent})*`;
const namePattern = `(?:${domainAndPort}/)?${remoteName}`;

const referenceRegexp = new RegExp(`^(${namePattern})(?::(${tagPattern}))?(?:@(${digestPattern}))?$`);
const anchoredNameRegexp = new RegExp(`^(?:(${domainAndPort})/)?(${remoteName})$`);
const anchoredIdentifierRegexp = /^[a-f0-9]{64}$/;
const anchoredTagRegexp = new RegExp(`^${tagPattern}$`);

/** Encoded lengths of the digest algorithms tote accepts (those of go-digest). */
const digestHexLength: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

const invalid = (input: string, why: string): ToteError =>
  new ToteError('terminal', 'InvalidImageReference', `invalid image reference ${JSON.stringify(input)}: ${why}`);

/**
 * Checks a digest string (`sha256:<64 lowercase hex>`, also sha384/sha512) and returns it unchanged.
 * @throws ToteError kind `terminal`, reason `InvalidDigest`, naming what is wrong.
 */
export function parseDigest(digest: string): string {
  const fail = (why: string) =>
    new ToteError('terminal', 'InvalidDigest', `invalid digest ${JSON.stringify(digest)}: ${why}`);
  const colon = digest.indexOf(':');
  if (colon <= 0) throw fail('expected algorithm:hex');
  const algorithm = digest.slice(0, colon);
  const encoded = digest.slice(colon + 1);
  const length = digestHexLength[algorithm];
  if (length === undefined) {
    if (!new RegExp(`^${digestPattern}$`).test(digest)) throw fail('malformed');
    throw fail(`unsupported algorithm ${JSON.stringify(algorithm)} (sha256, sha384 and sha512 are supported)`);
  }
  if (encoded.length !== length) throw fail(`${algorithm} needs ${length} hex characters, got ${encoded.length}`);
  if (!/^[a-f0-9]+$/.test(encoded)) throw fail('the hex part must be lowercase hexadecimal');
  return digest;
}

/** Splits a name into domain and remainder with Docker's rules (the first component is a domain only if it looks like one). */
function splitDockerDomain(name: string): { domain: string; remainder: string } {
  const slash = name.indexOf('/');
  let domain: string;
  let remainder: string;
  if (slash < 0) {
    domain = defaultDomain;
    remainder = name;
  } else {
    const first = name.slice(0, slash);
    const rest = name.slice(slash + 1);
    // index.docker.io has a dot, so it lands here and is renamed below.
    if (first === 'localhost' || /[.:]/.test(first) || first.toLowerCase() !== first) {
      domain = first;
      remainder = rest;
    } else {
      domain = defaultDomain;
      remainder = name;
    }
  }
  if (domain === legacyDefaultDomain) domain = defaultDomain;
  if (domain === defaultDomain && !remainder.includes('/')) remainder = officialRepoPrefix + remainder;
  return { domain, remainder };
}

/**
 * Parses an image reference as the kubelet and containerd do: `nginx` is `docker.io/library/nginx`, `user/app` is
 * `docker.io/user/app`, `index.docker.io/x` is `docker.io/x`; a first component with a `.` or `:`, or `localhost`, or
 * uppercase letters is a registry host. Tag and digest may both be present (`name:tag@sha256:…`); the digest is then
 * what `identifier` asks for.
 * @throws ToteError kind `terminal`, reason `InvalidImageReference` (or `InvalidDigest`), naming what is wrong.
 */
export function parseReference(input: string): ImageReference {
  if (input === '') throw invalid(input, 'empty reference');
  if (input.trim() !== input) throw invalid(input, 'leading or trailing whitespace');
  if (anchoredIdentifierRegexp.test(input)) {
    throw invalid(input, 'a bare 64-character hex string is an image ID, not a repository name');
  }
  const { domain: splitDomain, remainder } = splitDockerDomain(input);
  const colon = remainder.indexOf(':');
  const remote = colon >= 0 ? remainder.slice(0, colon) : remainder;
  if (remote.toLowerCase() !== remote)
    throw invalid(input, `repository name ${JSON.stringify(remote)} must be lowercase`);

  const full = `${splitDomain}/${remainder}`;
  const match = referenceRegexp.exec(full);
  if (match === null) throw invalid(input, explainMismatch(full));
  const [, name = '', tag, digest] = match;
  const nameMatch = anchoredNameRegexp.exec(name);
  const domain = nameMatch?.[1] ?? '';
  const path = nameMatch?.[2] ?? name;
  if (domain === '') throw invalid(input, 'no registry domain');
  if (path.length > maxRepositoryNameLength) {
    throw invalid(input, `repository path is ${path.length} characters, more than ${maxRepositoryNameLength}`);
  }
  if (digest !== undefined) parseDigest(digest);
  return makeReference(domain, path, tag, digest);
}

/** Says which part of a reference does not follow the grammar, for an error a human can act on. */
function explainMismatch(full: string): string {
  const at = full.indexOf('@');
  const namePart = at >= 0 ? full.slice(0, at) : full;
  if (at >= 0) {
    const digest = full.slice(at + 1);
    if (!new RegExp(`^${digestPattern}$`).test(digest)) return `digest ${JSON.stringify(digest)} is malformed`;
  }
  const lastSlash = namePart.lastIndexOf('/');
  const lastColon = namePart.lastIndexOf(':');
  let repository = namePart;
  if (lastColon > lastSlash) {
    const tag = namePart.slice(lastColon + 1);
    repository = namePart.slice(0, lastColon);
    if (!anchoredTagRegexp.test(tag)) {
      return `tag ${JSON.stringify(tag)} must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`;
    }
  }
  if (!anchoredNameRegexp.test(repository)) {
    return (
      `repository ${JSON.stringify(repository)} must be [host[:port]/]path with path components of lowercase ` +
      'letters and digits separated by ".", "_", "__" or dashes'
    );
  }
  return 'invalid reference format';
}

/** Builds a reference from parts that are already valid. */
function makeReference(
  domain: string,
  path: string,
  tag: string | undefined,
  digest: string | undefined,
): ImageReference {
  const name = `${domain}/${path}`;
  const text = `${name}${tag !== undefined ? `:${tag}` : ''}${digest !== undefined ? `@${digest}` : ''}`;
  return Object.freeze({
    domain,
    path,
    name,
    ...(tag !== undefined ? { tag } : {}),
    ...(digest !== undefined ? { digest } : {}),
    apiHost: domain === defaultDomain ? dockerHubApiHost : domain,
    identifier: digest ?? tag ?? defaultTag,
    toString: () => text,
  });
}

/**
 * Returns the same repository with another tag and/or digest (`undefined` drops it): e.g. the backup target of a
 * rescued image, pushed by digest and then tagged.
 */
export function withIdentifiers(ref: ImageReference, ids: { tag?: string; digest?: string }): ImageReference {
  if (ids.tag !== undefined && !anchoredTagRegexp.test(ids.tag)) {
    throw invalid(`${ref.name}:${ids.tag}`, `tag ${JSON.stringify(ids.tag)} is malformed`);
  }
  if (ids.digest !== undefined) parseDigest(ids.digest);
  return makeReference(ref.domain, ref.path, ids.tag, ids.digest);
}

/**
 * The short form Docker prints: `nginx:1.27` for `docker.io/library/nginx:1.27`, `user/app` for `docker.io/user/app`.
 */
export function familiarName(ref: ImageReference): string {
  let name = ref.name;
  if (ref.domain === defaultDomain) {
    name = ref.path;
    const rest = name.startsWith(officialRepoPrefix) ? name.slice(officialRepoPrefix.length) : undefined;
    if (rest !== undefined && !rest.includes('/')) name = rest;
  }
  return `${name}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/**
 * The name of the image record CRI keeps for `reference` (`nginx` → `docker.io/library/nginx:latest`; the tag dropped
 * beside a digest), or the digest/id itself for `sha256:…`. Agents look records up by it and the controller matches
 * record names against it, so the two always agree.
 */
export function recordNameFor(reference: string): string {
  if (/^sha256:[a-f0-9]{64}$/.test(reference)) return reference;
  const ref = parseReference(reference);
  if (ref.digest !== undefined) return withIdentifiers(ref, { digest: ref.digest }).toString();
  return withIdentifiers(ref, { tag: ref.tag ?? defaultTag }).toString();
}
