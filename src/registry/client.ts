// The OCI Distribution client: tag resolution for the controller, digest-preserving push for the agent.
//
// Concurrency model: a RegistryClient is safe to share. Each push walks its image graph children-first; the blobs of
// one manifest are uploaded with at most `blobConcurrency` in flight, and a blob shared by several manifests of an
// index is uploaded once (an in-flight map keyed by digest within the push). The Authenticator de-duplicates token
// fetches. Each HTTP request has its own deadline; streamed uploads use `uploadTimeoutMs`.
import { isRetryable, isToteError, ToteError } from '../api/errors.ts';
import type { ErrorKind } from '../api/errors.ts';
import { Authenticator, repositoryScope } from './auth.ts';
import type { AuthTarget } from './auth.ts';
import type { CredentialLookup } from './credentials.ts';
import { digestOf, VerifyingReader } from './digest-stream.ts';
import { errorFromResponse, RegistryError } from './errors.ts';
import { header, headerValues, HttpTransport } from './http.ts';
import type { HttpRequest, HttpResponse, TransportOptions } from './http.ts';
import { isForeignLayer, manifestAccept, parseManifest } from './media-types.ts';
import type { Descriptor } from './media-types.ts';
import type { BlobOutcome, RegistryMetrics } from './metrics.ts';
import { parseDigest, parseReference, withIdentifiers } from './reference.ts';
import type { ImageReference } from './reference.ts';

/** What a tag (or digest) resolves to on a registry. */
export interface ResolvedManifest {
  /** Digest of the manifest or index, `sha256:…`. */
  readonly digest: string;
  /** Its media type (OCI index/manifest, Docker list/schema2), without parameters. */
  readonly mediaType: string;
  /** Its size in bytes. */
  readonly size: number;
}

/** Per-call options of resolve. */
export interface ResolveOptions {
  /** Deadline for the whole resolution, including a token round trip; default the client's `timeoutMs`. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/**
 * Where push reads content: implemented by the agent over containerd's content store, and by tests in memory.
 * Digests are `algorithm:hex`; implementations throw ToteError `not-found` for content they lack.
 */
export interface BlobSource {
  /** Size in bytes of a blob. */
  size(digest: string): Promise<number>;
  /** Streams a blob from `offset` (default 0) to its end. Called again from 0 when an upload is retried. */
  open(digest: string, offset?: number): AsyncIterable<Uint8Array>;
}

/** A BlobSource that also gives manifests and indexes, byte for byte as stored. */
export interface ImageSource extends BlobSource {
  /**
   * The exact stored bytes of a manifest or index, or undefined when this source does not hold it (typically the
   * other platforms' manifests of an index on a node that pulled one platform).
   */
  manifest(digest: string): Promise<Uint8Array | undefined>;
}

/** One step of a push, for progress reporting. */
export type PushProgress =
  | { readonly type: 'blob'; readonly digest: string; readonly size: number; readonly outcome: BlobOutcome }
  | { readonly type: 'blob-bytes'; readonly digest: string; readonly size: number; readonly sent: number }
  /** A PATCH chunk of a large blob was accepted: bytes `start`..`end` inclusive. */
  | { readonly type: 'chunk'; readonly digest: string; readonly start: number; readonly end: number }
  | { readonly type: 'manifest'; readonly digest: string; readonly outcome: 'uploaded' | 'skipped' }
  | { readonly type: 'tag'; readonly tag: string; readonly digest: string };

/** Per-call options of push. */
export interface PushOptions {
  /**
   * Repositories on the same registry that may already hold the blobs (e.g. an earlier backup of the same image); a
   * missing blob is first offered as a cross-repository mount from each, in order.
   */
  readonly mountFrom?: readonly string[];
  /**
   * Push an index even when some of its child manifests are not in the source. Off by default: most registries
   * (docker/distribution included) refuse such an index with MANIFEST_BLOB_UNKNOWN, and the backup would not be
   * complete anyway.
   */
  readonly allowPartialIndex?: boolean;
  /** Called for each step; must not throw. */
  readonly onProgress?: (event: PushProgress) => void;
  readonly signal?: AbortSignal;
}

/** What a push did. */
export interface PushResult {
  /**
   * `repository@digest`, the digest the registry confirmed (equal to the source root digest): a reference every OCI tool
   * accepts (skopeo refuses one with both a tag and a digest).
   */
  readonly reference: string;
  /** The tag written beside it, when the target reference had one. */
  readonly tag?: string;
  readonly digest: string;
  readonly blobsUploaded: number;
  readonly blobsSkipped: number;
  readonly blobsMounted: number;
  readonly bytesUploaded: number;
  /** Bytes of blobs the registry already had (present or mounted). */
  readonly bytesSkipped: number;
  readonly manifestsUploaded: number;
  readonly manifestsSkipped: number;
}

/** Retry policy for transient failures (5xx, 408/429, resets, timeouts). */
export interface RetryOptions {
  /** Total attempts, first included; default 5. */
  readonly attempts?: number;
  /** Delay before the first retry; doubled each time with full jitter; default 250ms. */
  readonly initialDelayMs?: number;
  /** Cap on a single delay; default 10s. */
  readonly maxDelayMs?: number;
}

/** Options of a RegistryClient. TLS and plain-HTTP settings apply to every registry this client talks to. */
export interface RegistryClientOptions extends TransportOptions {
  /** Credentials by registry domain; anonymous when omitted. See credentialsFromSecret. */
  readonly credentials?: CredentialLookup;
  /** Deadline of each ordinary request (and of resolve as a whole); default 30s. */
  readonly timeoutMs?: number;
  /** Deadline of each request that carries blob bytes; default 15 minutes. */
  readonly uploadTimeoutMs?: number;
  /** Blobs up to this size are uploaded in one PUT; larger ones in PATCH chunks. Default 32 MiB. */
  readonly monolithicThreshold?: number;
  /** Size of one PATCH chunk; default 16 MiB. */
  readonly chunkSize?: number;
  /** Blobs of one manifest uploaded at once; default 3. */
  readonly blobConcurrency?: number;
  readonly retry?: RetryOptions;
  /** Shared metrics; none recorded when omitted. */
  readonly metrics?: RegistryMetrics;
  /** Clock for token expiry, ms since the epoch; injected by tests. */
  readonly now?: () => number;
  /** Waits between retries; injected by tests that must not wait. */
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

const defaultSleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason as Error);
      },
      { once: true },
    );
  });

const errorResult = (err: unknown): ErrorKind | 'success' =>
  err instanceof ToteError
    ? err.kind === 'conflict' || err.kind === 'already-exists'
      ? 'terminal'
      : err.kind
    : 'transient';

/** A client for OCI Distribution registries (Docker Registry HTTP API v2). */
export class RegistryClient {
  readonly #transport: HttpTransport;
  readonly #auth: Authenticator;
  readonly #timeoutMs: number;
  readonly #uploadTimeoutMs: number;
  readonly #monolithicThreshold: number;
  readonly #chunkSize: number;
  readonly #blobConcurrency: number;
  readonly #retry: Required<RetryOptions>;
  readonly #metrics: RegistryMetrics | undefined;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;

  constructor(options: RegistryClientOptions = {}) {
    this.#transport = new HttpTransport(options);
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#uploadTimeoutMs = options.uploadTimeoutMs ?? 15 * 60_000;
    this.#monolithicThreshold = options.monolithicThreshold ?? 32 << 20;
    this.#chunkSize = options.chunkSize ?? 16 << 20;
    this.#blobConcurrency = Math.max(1, options.blobConcurrency ?? 3);
    this.#retry = {
      attempts: Math.max(1, options.retry?.attempts ?? 5),
      initialDelayMs: options.retry?.initialDelayMs ?? 250,
      maxDelayMs: options.retry?.maxDelayMs ?? 10_000,
    };
    this.#metrics = options.metrics;
    this.#sleep = options.sleep ?? defaultSleep;
    this.#auth = new Authenticator({
      transport: this.#transport,
      timeoutMs: this.#timeoutMs,
      ...(options.credentials !== undefined ? { credentials: options.credentials } : {}),
      ...(options.now !== undefined ? { now: options.now } : {}),
    });
  }

  /** Token requests made so far (the bearer cache's misses). */
  get tokenRequests(): number {
    return this.#auth.tokenRequests;
  }

  /** Closes idle connections. */
  close(): void {
    this.#transport.close();
  }

  /**
   * Resolves a reference to the digest, media type and size of its manifest or index: HEAD on the manifest with an
   * Accept for OCI index/manifest and Docker list/schema2, falling back to GET (and hashing the bytes) when the
   * registry sends no Docker-Content-Digest. A reference with a digest is checked against the registry. Not retried:
   * callers retry transient errors with their own backoff.
   * @throws ToteError `not-found` (no such tag/repository), `unauthorized`, `transient` (`RegistryTimeout` once the
   *   deadline passes, 5xx, resets), `integrity` (the registry serves other bytes than the digest asked for).
   */
  async resolve(reference: ImageReference | string, options: ResolveOptions = {}): Promise<ResolvedManifest> {
    const ref = typeof reference === 'string' ? parseReference(reference) : reference;
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const started = performance.now();
    const deadline = AbortSignal.timeout(timeoutMs);
    const signal = options.signal !== undefined ? AbortSignal.any([deadline, options.signal]) : deadline;
    try {
      const result = await this.#resolve(ref, timeoutMs, signal);
      this.#observeResolve('success', started);
      return result;
    } catch (err) {
      const converted =
        deadline.aborted && options.signal?.aborted !== true && !(err instanceof ToteError)
          ? new ToteError(
              'transient',
              'RegistryTimeout',
              `resolve ${ref}: no answer from ${ref.apiHost} within ${timeoutMs}ms`,
              {
                cause: err,
              },
            )
          : err;
      this.#observeResolve(errorResult(converted), started);
      throw converted;
    }
  }

  async #resolve(ref: ImageReference, timeoutMs: number, signal: AbortSignal): Promise<ResolvedManifest> {
    const target = this.#target(ref, ['pull']);
    const url = this.#url(ref, `manifests/${ref.identifier}`);
    const what = `resolve ${ref}`;
    const head = await this.#send(target, {
      method: 'HEAD',
      url,
      headers: { accept: manifestAccept },
      timeoutMs,
      signal,
      what,
    });
    await head.discard();
    if (head.status !== 200) throw this.#notFoundOr(head.status, '', what, ref);
    let digest = header(head.headers, 'docker-content-digest');
    let mediaType = mediaTypeOf(header(head.headers, 'content-type'));
    let size = Number(header(head.headers, 'content-length') ?? NaN);
    if (digest === undefined || digest === '' || mediaType === '' || !Number.isFinite(size)) {
      const get = await this.#send(target, {
        method: 'GET',
        url,
        headers: { accept: manifestAccept },
        timeoutMs,
        signal,
        what,
      });
      const body = await get.bytes();
      if (get.status !== 200) throw this.#notFoundOr(get.status, body.toString('utf8'), what, ref);
      const algorithm = ref.digest !== undefined ? ref.digest.slice(0, ref.digest.indexOf(':')) : 'sha256';
      digest = digestOf(body, algorithm);
      mediaType = mediaTypeOf(header(get.headers, 'content-type')) || parseManifest(body, digest).mediaType;
      size = body.length;
    }
    parseDigest(digest);
    if (ref.digest !== undefined && digest !== ref.digest) {
      throw new ToteError(
        'integrity',
        'RegistryDigestMismatch',
        `${what}: registry serves ${digest} for ${ref.digest}`,
      );
    }
    return { digest, mediaType, size };
  }

  #notFoundOr(status: number, body: string, what: string, ref: ImageReference): RegistryError {
    const err = errorFromResponse(status, body, what);
    if (err.kind !== 'not-found') return err;
    return new RegistryError(
      'not-found',
      'ManifestNotFound',
      `${what}: ${ref.identifier} not found in ${ref.name} (registry answered ${status}${err.code !== undefined ? ` ${err.code}` : ''})`,
      {
        status,
        errors: err.errors,
      },
    );
  }

  /**
   * Pushes an image by digest to `target`, then tags it when `target` has a tag. Children go before parents: blobs,
   * then each platform manifest, then the index, then the tag. Manifests and indexes are PUT byte for byte as the
   * source holds them, so the registry's digest equals the source's; the Docker-Content-Digest it answers is checked.
   * Blobs the registry already has are skipped (HEAD), others mounted from `mountFrom` repositories when possible, else
   * streamed (one PUT up to `monolithicThreshold`, PATCH chunks beyond), their digest verified as they stream.
   * Transient failures are retried with exponential backoff, per blob and per manifest.
   * @param root descriptor of the image's top manifest or index (its digest is what the backup will be known by).
   * @throws ToteError; RegistryError carries the registry's own error code for 4xx answers.
   */
  async push(
    target: ImageReference | string,
    root: Pick<Descriptor, 'digest' | 'mediaType'> & { readonly size?: number },
    source: ImageSource,
    options: PushOptions = {},
  ): Promise<PushResult> {
    const ref = typeof target === 'string' ? parseReference(target) : target;
    const started = performance.now();
    try {
      parseDigest(root.digest);
      if (ref.digest !== undefined && ref.digest !== root.digest) {
        throw new ToteError(
          'terminal',
          'PushDigestMismatch',
          `push ${root.digest} to ${ref}: the target names another digest`,
        );
      }
      const result = await new PushRun(this, ref, source, options).run(root);
      this.#observePush('success', started);
      return result;
    } catch (err) {
      this.#observePush(errorResult(err), started);
      throw err;
    }
  }

  // ---- internals shared with PushRun ----

  /** @internal */
  target(ref: ImageReference, actions: readonly string[], mountFrom?: string): AuthTarget {
    return this.#target(ref, actions, mountFrom);
  }

  #target(ref: ImageReference, actions: readonly string[], mountFrom?: string): AuthTarget {
    const scopes = [repositoryScope(ref.path, actions)];
    if (mountFrom !== undefined) scopes.push(repositoryScope(mountFrom, ['pull']));
    return { apiHost: ref.apiHost, domain: ref.domain, repository: ref.path, scopes };
  }

  /** @internal */
  url(ref: ImageReference, suffix: string): URL {
    return this.#url(ref, suffix);
  }

  #url(ref: ImageReference, suffix: string): URL {
    return new URL(`${this.#transport.scheme}://${ref.apiHost}/v2/${ref.path}/${suffix}`);
  }

  /** @internal */
  get settings() {
    return {
      timeoutMs: this.#timeoutMs,
      uploadTimeoutMs: this.#uploadTimeoutMs,
      monolithicThreshold: this.#monolithicThreshold,
      chunkSize: this.#chunkSize,
      blobConcurrency: this.#blobConcurrency,
      metrics: this.#metrics,
    };
  }

  /**
   * @internal Sends a request with auth, answering one 401 challenge. A streamed body cannot be replayed: after a 401
   * on one, the new credentials are kept and a transient error makes the caller's retry loop start the step again.
   */
  async send(target: AuthTarget, req: HttpRequest): Promise<HttpResponse> {
    return this.#send(target, req);
  }

  async #send(target: AuthTarget, req: HttpRequest): Promise<HttpResponse> {
    const withAuth = (authorization: string | undefined): HttpRequest => ({
      ...req,
      headers: { ...req.headers, ...(authorization !== undefined ? { authorization } : {}) },
    });
    const authorization = await this.#auth.authorization(target, req.signal);
    let response = await this.#transport.request(withAuth(authorization));
    if (response.status !== 401) return response;
    await response.discard();
    const renewed = await this.#auth.challenged(
      target,
      headerValues(response.headers, 'www-authenticate'),
      authorization,
      req.signal,
    );
    if (req.body !== undefined && !(req.body instanceof Uint8Array)) {
      throw new ToteError(
        'transient',
        'RegistryAuthRenewed',
        `${req.what}: credentials renewed; the upload starts again`,
      );
    }
    response = await this.#transport.request(withAuth(renewed));
    if (response.status === 401) {
      const body = await response.text();
      const refused = errorFromResponse(401, body, req.what);
      throw new RegistryError(
        'unauthorized',
        'RegistryCredentialsRejected',
        `${req.what}: registry ${target.apiHost} rejected the credentials configured for ${target.domain}${refused.code !== undefined ? ` (${refused.code})` : ''}`,
        { status: 401, errors: refused.errors },
      );
    }
    return response;
  }

  /** @internal Runs `step` with retries on transient failures. */
  async retrying<T>(operation: string, step: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    let delay = this.#retry.initialDelayMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await step();
      } catch (err) {
        const retryable = isRetryable(err) && !isToteError(err, 'conflict');
        if (!retryable || attempt >= this.#retry.attempts || signal?.aborted === true) throw err;
        this.#metrics?.retries.inc({ operation });
        await this.#sleep(Math.random() * Math.min(delay, this.#retry.maxDelayMs), signal);
        delay *= 2;
      }
    }
  }

  #observeResolve(result: string, started: number): void {
    this.#metrics?.resolves.inc({ result });
    this.#metrics?.resolveDuration.observe({ result }, (performance.now() - started) / 1000);
  }

  #observePush(result: string, started: number): void {
    this.#metrics?.pushes.inc({ result });
    this.#metrics?.pushDuration.observe({ result }, (performance.now() - started) / 1000);
  }
}

/** `application/json; charset=utf-8` → `application/json`. */
const mediaTypeOf = (contentType: string | undefined): string => (contentType ?? '').split(';')[0]!.trim();

/** The state of one push: counters and the blobs already done or in flight. */
class PushRun {
  readonly #client: RegistryClient;
  readonly #ref: ImageReference;
  readonly #source: ImageSource;
  readonly #options: PushOptions;
  readonly #blobs = new Map<string, Promise<void>>();
  readonly #manifests = new Map<string, Promise<void>>();
  readonly #counts = {
    blobsUploaded: 0,
    blobsSkipped: 0,
    blobsMounted: 0,
    bytesUploaded: 0,
    bytesSkipped: 0,
    manifestsUploaded: 0,
    manifestsSkipped: 0,
  };

  constructor(client: RegistryClient, ref: ImageReference, source: ImageSource, options: PushOptions) {
    this.#client = client;
    this.#ref = ref;
    this.#source = source;
    this.#options = options;
  }

  async run(root: Pick<Descriptor, 'digest' | 'mediaType'> & { readonly size?: number }): Promise<PushResult> {
    const bytes = await this.#manifestBytes(root.digest, root.size);
    if (bytes === undefined) {
      throw new ToteError('not-found', 'ManifestNotInSource', `push ${this.#ref}: the source lacks ${root.digest}`);
    }
    const mediaType = await this.#pushGraph(root.digest, root.mediaType, bytes);
    const tag = this.#ref.tag;
    if (tag !== undefined) {
      await this.#putManifest(tag, root.digest, mediaType, bytes);
      this.#options.onProgress?.({ type: 'tag', tag, digest: root.digest });
    }
    return {
      reference: withIdentifiers(this.#ref, { digest: root.digest }).toString(),
      ...(tag !== undefined ? { tag } : {}),
      digest: root.digest,
      ...this.#counts,
    };
  }

  /** Reads and checks a manifest from the source: its bytes must hash to its digest. */
  async #manifestBytes(digest: string, size?: number): Promise<Uint8Array | undefined> {
    const bytes = await this.#source.manifest(digest);
    if (bytes === undefined) return undefined;
    const actual = digestOf(bytes, digest.slice(0, digest.indexOf(':')));
    if (actual !== digest || (size !== undefined && size !== bytes.length)) {
      throw new ToteError(
        'integrity',
        'ManifestDigestMismatch',
        `manifest ${digest} in the source has digest ${actual} and ${bytes.length} bytes`,
      );
    }
    return bytes;
  }

  /** Pushes everything below a manifest or index, then the document itself by digest. Returns its media type. */
  async #pushGraph(digest: string, descriptorMediaType: string, bytes: Uint8Array): Promise<string> {
    const parsed = parseManifest(bytes, digest, descriptorMediaType || undefined);
    if (parsed.kind === 'index') {
      for (const child of parsed.manifests) {
        await this.#once(this.#manifests, child.digest, async () => {
          const childBytes = await this.#manifestBytes(child.digest, child.size);
          if (childBytes === undefined) {
            if (this.#options.allowPartialIndex === true) return;
            throw new ToteError(
              'terminal',
              'IncompleteImage',
              `push ${this.#ref}: index ${digest} lists ${child.digest}${platformText(child)}, which the source does not hold`,
            );
          }
          await this.#pushGraph(child.digest, child.mediaType, childBytes);
        });
      }
    } else {
      const queue = [...parsed.blobs];
      const workers = Array.from(
        { length: Math.min(this.#client.settings.blobConcurrency, queue.length) },
        async () => {
          for (let blob = queue.shift(); blob !== undefined; blob = queue.shift()) {
            const b = blob;
            await this.#once(this.#blobs, b.digest, () => this.#pushBlob(b));
          }
        },
      );
      await Promise.all(workers);
    }
    await this.#putManifest(digest, digest, parsed.mediaType, bytes);
    return parsed.mediaType;
  }

  /** Runs `work` once per key within this push; later callers wait for the first. */
  #once(map: Map<string, Promise<void>>, key: string, work: () => Promise<void>): Promise<void> {
    let pending = map.get(key);
    if (pending === undefined) {
      pending = work();
      map.set(key, pending);
    }
    return pending;
  }

  #record(blob: Descriptor, outcome: BlobOutcome, bytes: number): void {
    const metrics = this.#client.settings.metrics;
    metrics?.blobs.inc({ outcome });
    metrics?.blobBytes.inc({ outcome }, bytes);
    if (outcome === 'uploaded') {
      this.#counts.blobsUploaded++;
      this.#counts.bytesUploaded += bytes;
    } else if (outcome === 'skipped') {
      this.#counts.blobsSkipped++;
      this.#counts.bytesSkipped += bytes;
    } else if (outcome === 'mounted') {
      this.#counts.blobsMounted++;
      this.#counts.bytesSkipped += bytes;
    }
    this.#options.onProgress?.({ type: 'blob', digest: blob.digest, size: blob.size, outcome });
  }

  async #pushBlob(blob: Descriptor): Promise<void> {
    parseDigest(blob.digest);
    if (isForeignLayer(blob)) {
      this.#record(blob, 'foreign', 0);
      return;
    }
    const client = this.#client;
    const signal = this.#options.signal;
    const optSignal = signal !== undefined ? { signal } : {};
    const target = client.target(this.#ref, ['pull', 'push']);
    const blobUrl = client.url(this.#ref, `blobs/${blob.digest}`);
    const exists = await client.retrying(
      'blob-head',
      async () => {
        const res = await client.send(target, {
          method: 'HEAD',
          url: blobUrl,
          timeoutMs: client.settings.timeoutMs,
          what: `HEAD blob ${blob.digest} in ${this.#ref.name}`,
          ...optSignal,
        });
        await res.discard();
        if (res.status === 200) return true;
        if (res.status === 404) return false;
        throw errorFromResponse(res.status, '', `HEAD blob ${blob.digest} in ${this.#ref.name}`);
      },
      signal,
    );
    if (exists) {
      this.#record(blob, 'skipped', blob.size);
      return;
    }
    await client.retrying('blob-upload', () => this.#upload(blob), signal);
  }

  /** An empty POST to blobs/uploads/ that opens an upload session or mounts a blob: the response and its body. */
  async #postUpload(
    target: Parameters<RegistryClient['send']>[0],
    url: URL,
    what: string,
  ): Promise<{ res: Awaited<ReturnType<RegistryClient['send']>>; body: string }> {
    const signal = this.#options.signal;
    const res = await this.#client.send(target, {
      method: 'POST',
      url,
      headers: { 'content-length': '0' },
      timeoutMs: this.#client.settings.timeoutMs,
      what,
      ...(signal !== undefined ? { signal } : {}),
    });
    return { res, body: await res.text() };
  }

  /** One attempt at uploading a blob: open a session (or mount), stream, commit. */
  async #upload(blob: Descriptor): Promise<void> {
    const client = this.#client;
    const { timeoutMs, uploadTimeoutMs, monolithicThreshold, chunkSize } = client.settings;
    const signal = this.#options.signal;
    const optSignal = signal !== undefined ? { signal } : {};
    const name = this.#ref.name;
    let location: URL | undefined;
    const target = client.target(this.#ref, ['pull', 'push']);
    for (const from of this.#options.mountFrom ?? []) {
      if (from === this.#ref.path) continue;
      const url = client.url(this.#ref, 'blobs/uploads/');
      url.searchParams.set('mount', blob.digest);
      url.searchParams.set('from', from);
      const what = `mount ${blob.digest} from ${from} into ${name}`;
      const { res, body } = await this.#postUpload(client.target(this.#ref, ['pull', 'push'], from), url, what);
      if (res.status === 201) {
        this.#record(blob, 'mounted', blob.size);
        return;
      }
      if (res.status === 202) {
        // The registry could not mount and opened an ordinary upload session instead.
        location = this.#location(res, url, what);
        break;
      }
      throw errorFromResponse(res.status, body, what);
    }
    if (location === undefined) {
      const url = client.url(this.#ref, 'blobs/uploads/');
      const what = `start upload of ${blob.digest} to ${name}`;
      const { res, body } = await this.#postUpload(target, url, what);
      if (res.status !== 202) throw errorFromResponse(res.status, body, what);
      location = this.#location(res, url, what);
    }

    const size = await this.#source.size(blob.digest);
    if (size !== blob.size) {
      throw new ToteError(
        'integrity',
        'BlobSizeMismatch',
        `blob ${blob.digest}: the manifest says ${blob.size} bytes, the source has ${size}`,
      );
    }
    let sent = 0;
    const reader = new VerifyingReader(this.#source.open(blob.digest, 0), blob.digest, size, (n) => {
      sent += n;
      this.#options.onProgress?.({ type: 'blob-bytes', digest: blob.digest, size, sent });
    });
    try {
      if (size > monolithicThreshold) {
        while (reader.position < size) {
          const start = reader.position;
          const length = Math.min(chunkSize, size - start);
          const what = `PATCH ${start}-${start + length - 1} of ${blob.digest} to ${name}`;
          const res = await client.send(target, {
            method: 'PATCH',
            url: location,
            headers: {
              'content-type': 'application/octet-stream',
              'content-length': String(length),
              'content-range': `${start}-${start + length - 1}`,
            },
            body: reader.slice(length),
            timeoutMs: uploadTimeoutMs,
            what,
            ...optSignal,
          });
          const body = await res.text();
          if (res.status !== 202) throw errorFromResponse(res.status, body, what);
          location = this.#location(res, location, what);
          this.#options.onProgress?.({ type: 'chunk', digest: blob.digest, start, end: start + length - 1 });
        }
      }
      const commit = new URL(location);
      commit.searchParams.set('digest', blob.digest);
      const monolithic = size <= monolithicThreshold;
      const what = `PUT ${blob.digest} to ${name}`;
      const res = await client.send(target, {
        method: 'PUT',
        url: commit,
        headers: {
          'content-type': 'application/octet-stream',
          'content-length': String(monolithic ? size : 0),
        },
        ...(monolithic ? { body: reader.slice(size) } : {}),
        timeoutMs: monolithic ? uploadTimeoutMs : timeoutMs,
        what,
        ...optSignal,
      });
      const body = await res.text();
      if (res.status !== 201) throw errorFromResponse(res.status, body, what);
      const confirmed = header(res.headers, 'docker-content-digest');
      if (confirmed !== undefined && confirmed !== blob.digest) {
        throw new ToteError('integrity', 'RegistryDigestMismatch', `${what}: registry stored it as ${confirmed}`);
      }
    } finally {
      await reader.close();
    }
    this.#record(blob, 'uploaded', size);
  }

  /** The upload URL of a session from the Location header (absolute or relative to the request). */
  #location(res: HttpResponse, base: URL, what: string): URL {
    const value = header(res.headers, 'location');
    if (value === undefined || value === '') {
      throw new ToteError(
        'transient',
        'RegistryNoLocation',
        `${what}: registry answered ${res.status} without Location`,
      );
    }
    return new URL(value, base);
  }

  /** PUTs a manifest or index by digest or tag, unless (by digest) it is already there. */
  async #putManifest(identifier: string, digest: string, mediaType: string, bytes: Uint8Array): Promise<void> {
    const client = this.#client;
    const signal = this.#options.signal;
    const optSignal = signal !== undefined ? { signal } : {};
    const target = client.target(this.#ref, ['pull', 'push']);
    const url = client.url(this.#ref, `manifests/${identifier}`);
    const byDigest = identifier === digest;
    if (byDigest) {
      const present = await client.retrying(
        'manifest-head',
        async () => {
          const what = `HEAD manifest ${digest} in ${this.#ref.name}`;
          const res = await client.send(target, {
            method: 'HEAD',
            url,
            headers: { accept: manifestAccept },
            timeoutMs: client.settings.timeoutMs,
            what,
            ...optSignal,
          });
          await res.discard();
          if (res.status === 200) return true;
          if (res.status === 404) return false;
          throw errorFromResponse(res.status, '', what);
        },
        signal,
      );
      if (present) {
        client.settings.metrics?.manifests.inc({ outcome: 'skipped' });
        this.#counts.manifestsSkipped++;
        this.#options.onProgress?.({ type: 'manifest', digest, outcome: 'skipped' });
        return;
      }
    }
    await client.retrying(
      'manifest-put',
      async () => {
        const what = `PUT manifest ${identifier} in ${this.#ref.name}`;
        const res = await client.send(target, {
          method: 'PUT',
          url,
          headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
          body: bytes,
          timeoutMs: client.settings.timeoutMs,
          what,
          ...optSignal,
        });
        const body = await res.text();
        if (res.status !== 201) throw errorFromResponse(res.status, body, what);
        const confirmed = header(res.headers, 'docker-content-digest');
        if (confirmed !== undefined && confirmed !== digest) {
          throw new ToteError(
            'integrity',
            'RegistryDigestMismatch',
            `${what}: registry computed ${confirmed} for content whose digest is ${digest}`,
          );
        }
      },
      signal,
    );
    if (byDigest) {
      client.settings.metrics?.manifests.inc({ outcome: 'uploaded' });
      this.#counts.manifestsUploaded++;
      this.#options.onProgress?.({ type: 'manifest', digest, outcome: 'uploaded' });
    }
  }
}

const platformText = (d: Descriptor): string =>
  d.platform !== undefined
    ? ` (${[d.platform.os, d.platform.architecture, d.platform.variant].filter((p) => p !== undefined).join('/')})`
    : '';
