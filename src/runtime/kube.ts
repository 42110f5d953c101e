// The Kubernetes API boundary. Two things live here:
//   - toKubeError(): converts whatever the transport throws (KubeHttpError with a Status body, socket errors,
//     timeouts) into a KubeApiError, a ToteError carrying the HTTP code and the Status reason, so callers decide by
//     kind and never by message;
//   - KubeClient: a small dynamic client over any resource (core, apps, coordination, tote's CRDs) that speaks plain
//     JSON as the server sends it, with merge/JSON patches, status writes guarded by resourceVersion, create-or-get,
//     paginated lists and watches. Every call has a deadline and every error leaves it converted.
// Where the server is and the credentials come from kubeconfig.ts; the HTTP itself is kube-http.ts.

import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import { ToteError } from '../api/errors.ts';
import type { ErrorKind } from '../api/errors.ts';
import { KubeHttp, KubeHttpError } from './kube-http.ts';
import type { HttpMethod, KubeHttpOptions, Query, RawWatchEvent } from './kube-http.ts';
import type { KubeConfig } from './kubeconfig.ts';

export { loadKubeConfig, KubeConfig } from './kubeconfig.ts';

// ─── errors ─────────────────────────────────────────────────────────────────────────────────────────────────────────

/** The Status object the API server returns with errors (the fields we use). */
export interface KubeStatus {
  kind?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: {
    name?: string;
    kind?: string;
    group?: string;
    causes?: { field?: string; message?: string; reason?: string }[];
    retryAfterSeconds?: number;
  };
}

/** A ToteError from the Kubernetes API: kind for the caller's decision, plus what the server said. */
export class KubeApiError extends ToteError {
  /** HTTP status code; 0 when the request never got an answer (network, timeout). */
  readonly code: number;
  /** The Status body, when the server sent one. */
  readonly status: KubeStatus | undefined;
  /** Server's Retry-After (429, some 5xx), in ms. */
  readonly retryAfterMs: number | undefined;

  constructor(
    kind: ErrorKind,
    reason: string,
    message: string,
    details: { code: number; status?: KubeStatus | undefined; retryAfterMs?: number | undefined; cause?: unknown },
  ) {
    super(kind, reason, message, { cause: details.cause });
    this.name = 'KubeApiError';
    this.code = details.code;
    this.status = details.status;
    this.retryAfterMs = details.retryAfterMs;
  }
}

/** True for 410 Gone / Expired: a watch or list continuation whose resourceVersion is too old; relist. */
export const isGone = (err: unknown): boolean => err instanceof KubeApiError && err.code === 410;
/** True for 404. */
export const isNotFound = (err: unknown): boolean => err instanceof ToteError && err.kind === 'not-found';
/** True for a 409 caused by a stale resourceVersion (not AlreadyExists). */
export const isConflict = (err: unknown): boolean => err instanceof ToteError && err.kind === 'conflict';
/** True for a 409 AlreadyExists on create. */
export const isAlreadyExists = (err: unknown): boolean => err instanceof ToteError && err.kind === 'already-exists';

/** Network error codes that mean "try again later". */
const TRANSIENT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

function parseStatus(body: unknown): KubeStatus | undefined {
  let value = body;
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch {
      return undefined;
    }
  }
  if (value && typeof value === 'object' && ('reason' in value || 'message' in value || 'code' in value))
    return value as KubeStatus;
  return undefined;
}

function networkCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

/**
 * Converts anything thrown by a KubeHttp call into a KubeApiError (a ToteError). ToteErrors pass through.
 * What: the verb and object, for the message ("get pods default/x").
 *   400 → terminal BadRequest · 401/403 → unauthorized · 404 → not-found · 409 AlreadyExists → already-exists,
 *   other 409 → conflict · 410 → transient Expired (see isGone: relist) · 422 → terminal Invalid with the server's
 *   message · 429, 5xx, network errors, timeouts → transient · anything else → transient Unexpected.
 */
export function toKubeError(err: unknown, what?: string): ToteError {
  if (err instanceof ToteError) return err;
  const prefix = what ? `${what}: ` : '';
  if (err instanceof KubeHttpError) {
    const code = err.statusCode;
    const status = parseStatus(err.body);
    const serverMessage = status?.message ?? `HTTP ${code}`;
    const message = `${prefix}${serverMessage}`;
    const header = err.headers['retry-after'];
    const retryAfterMs =
      typeof header === 'string' && /^\d+$/.test(header)
        ? Number(header) * 1000
        : status?.details?.retryAfterSeconds !== undefined
          ? status.details.retryAfterSeconds * 1000
          : undefined;
    const details = { code, status, retryAfterMs, cause: err };
    const reason = status?.reason;
    if (code === 404) return new KubeApiError('not-found', reason || 'NotFound', message, details);
    if (code === 409)
      return reason === 'AlreadyExists'
        ? new KubeApiError('already-exists', 'AlreadyExists', message, details)
        : new KubeApiError('conflict', reason || 'Conflict', message, details);
    if (code === 410) return new KubeApiError('transient', reason || 'Expired', message, details);
    if (code === 422) return new KubeApiError('terminal', reason || 'Invalid', message, details);
    if (code === 401 || code === 403)
      return new KubeApiError(
        'unauthorized',
        reason || (code === 401 ? 'Unauthorized' : 'Forbidden'),
        message,
        details,
      );
    if (code === 429) return new KubeApiError('transient', reason || 'TooManyRequests', message, details);
    if (code >= 500) return new KubeApiError('transient', reason || 'ServerError', message, details);
    if (code === 400 || code === 405 || code === 406 || code === 413 || code === 415)
      return new KubeApiError('terminal', reason || 'BadRequest', message, details);
    return new KubeApiError('transient', reason || 'Unexpected', message, details);
  }
  const name = (err as { name?: unknown } | null)?.name;
  if (name === 'TimeoutError' || name === 'AbortError')
    return new KubeApiError('transient', 'Timeout', `${prefix}request timed out or was aborted`, {
      code: 0,
      cause: err,
    });
  const netCode = networkCode(err);
  if (netCode !== undefined && TRANSIENT_CODES.has(netCode))
    return new KubeApiError('transient', 'NetworkError', `${prefix}${netCode}: ${messageOf(err)}`, {
      code: 0,
      cause: err,
    });
  return new KubeApiError('transient', 'Unexpected', `${prefix}${messageOf(err)}`, { code: 0, cause: err });
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ─── resources ──────────────────────────────────────────────────────────────────────────────────────────────────────

/** Identifies a resource type, as in a REST path: /api/v1/pods, /apis/tote.dev/v1alpha1/salvagerecords. */
export interface ResourceType {
  /** '' for the core group. */
  readonly group: string;
  readonly version: string;
  /** Lower-case plural as in URLs: 'pods', 'leases', 'salvagerecords'. */
  readonly plural: string;
  readonly namespaced: boolean;
}

/** Common resource types. */
export const resources = {
  pods: { group: '', version: 'v1', plural: 'pods', namespaced: true },
  nodes: { group: '', version: 'v1', plural: 'nodes', namespaced: false },
  namespaces: { group: '', version: 'v1', plural: 'namespaces', namespaced: false },
  configMaps: { group: '', version: 'v1', plural: 'configmaps', namespaced: true },
  secrets: { group: '', version: 'v1', plural: 'secrets', namespaced: true },
  leases: { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', namespaced: true },
  events: { group: 'events.k8s.io', version: 'v1', plural: 'events', namespaced: true },
  replicaSets: { group: 'apps', version: 'v1', plural: 'replicasets', namespaced: true },
  deployments: { group: 'apps', version: 'v1', plural: 'deployments', namespaced: true },
  statefulSets: { group: 'apps', version: 'v1', plural: 'statefulsets', namespaced: true },
  daemonSets: { group: 'apps', version: 'v1', plural: 'daemonsets', namespaced: true },
  certificateSigningRequests: {
    group: 'certificates.k8s.io',
    version: 'v1',
    plural: 'certificatesigningrequests',
    namespaced: false,
  },
  customResourceDefinitions: {
    group: 'apiextensions.k8s.io',
    version: 'v1',
    plural: 'customresourcedefinitions',
    namespaced: false,
  },
} as const satisfies Record<string, ResourceType>;

/** apiVersion string of a resource type ("v1", "coordination.k8s.io/v1"). */
export const apiVersionOf = (r: ResourceType): string => (r.group ? `${r.group}/${r.version}` : r.version);

/**
 * The REST path of a collection or one object. Namespace undefined on a namespaced type means all namespaces
 * (valid for list and watch only). subresource: 'status', 'scale', ...
 */
export function resourcePath(r: ResourceType, namespace?: string, name?: string, subresource?: string): string {
  let path = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  if (r.namespaced && namespace !== undefined) path += `/namespaces/${encodeURIComponent(namespace)}`;
  path += `/${r.plural}`;
  if (name !== undefined) path += `/${encodeURIComponent(name)}`;
  if (subresource !== undefined) path += `/${subresource}`;
  return path;
}

/** "namespace/name" or "name": the key of an object in caches and work queues. */
export function objectKey(obj: { metadata?: { name?: string; namespace?: string } }): string {
  const name = obj.metadata?.name ?? '';
  return obj.metadata?.namespace ? `${obj.metadata.namespace}/${name}` : name;
}

/** The inverse of objectKey. */
export function splitKey(key: string): { namespace: string | undefined; name: string } {
  const i = key.indexOf('/');
  return i === -1 ? { namespace: undefined, name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

/** Options of a list call. */
export interface ListOptions {
  labelSelector?: string;
  fieldSelector?: string;
  limit?: number;
  continue?: string;
  resourceVersion?: string;
  resourceVersionMatch?: 'Exact' | 'NotOlderThan';
}

/** One RFC 6902 operation. */
export interface JsonPatchOperation {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  value?: unknown;
  from?: string;
}

/** Options shared by writes. */
export interface WriteOptions {
  /** Identifies the writer in managedFields (default 'tote'). */
  fieldManager?: string;
  dryRun?: boolean;
}

export interface KubeClientOptions extends KubeHttpOptions {
  /** Deadline of every request (default 30 s); a watch's deadline is the server-side timeout it asks for. */
  requestTimeoutMs?: number;
  /** Default field manager (default 'tote'). */
  fieldManager?: string;
}

/**
 * A dynamic client over any resource type, speaking the API server's JSON. All errors are KubeApiError.
 * Objects are typed by the caller (T) but are the wire JSON: timestamps are RFC 3339 strings.
 */
export class KubeClient {
  readonly kubeConfig: KubeConfig;
  readonly #http: KubeHttp;
  readonly #timeoutMs: number;
  readonly #fieldManager: string;

  constructor(kubeConfig: KubeConfig, options: KubeClientOptions = {}) {
    this.kubeConfig = kubeConfig;
    this.#http = new KubeHttp(kubeConfig, options);
    this.#timeoutMs = options.requestTimeoutMs ?? 30_000;
    this.#fieldManager = options.fieldManager ?? 'tote';
  }

  async #request<T>(
    what: string,
    method: HttpMethod,
    path: string,
    query: Query = {},
    body?: { type: string; data: unknown },
  ): Promise<T> {
    try {
      return (await this.#http.request(method, path, query, body, AbortSignal.timeout(this.#timeoutMs))) as T;
    } catch (err) {
      throw toKubeError(err, what);
    }
  }

  /**
   * Watches a collection from resourceVersion (namespace undefined: all namespaces). Events arrive in order through
   * onEvent; onDone is called once when the stream ends (undefined: closed normally, e.g. the server's timeout; else a
   * KubeApiError). Resolves to a function that aborts the watch, after which onDone is not called.
   */
  watch(
    r: ResourceType,
    namespace: string | undefined,
    query: { resourceVersion: string; labelSelector?: string; fieldSelector?: string; timeoutSeconds: number },
    onEvent: (event: RawWatchEvent) => void,
    onDone: (err?: KubeApiError | ToteError) => void,
  ): Promise<() => void> {
    const what = `watch ${r.plural}${namespace ? ` in ${namespace}` : ''}`;
    return this.#http.watch(
      resourcePath(r, namespace),
      {
        resourceVersion: query.resourceVersion,
        labelSelector: query.labelSelector,
        fieldSelector: query.fieldSelector,
        timeoutSeconds: String(query.timeoutSeconds),
        allowWatchBookmarks: 'true',
      },
      onEvent,
      (err) => onDone(err === undefined ? undefined : toKubeError(err, what)),
    );
  }

  /** Closes this client's connections (shutdown, tests). Calls made afterwards open new ones. */
  close(): void {
    this.#http.close();
  }

  #writeQuery(options: WriteOptions = {}): Record<string, string | undefined> {
    return { fieldManager: options.fieldManager ?? this.#fieldManager, dryRun: options.dryRun ? 'All' : undefined };
  }

  /** GET one object. Throws not-found. */
  get<T extends KubernetesObject>(r: ResourceType, name: string, namespace?: string): Promise<T> {
    return this.#request(`get ${r.plural} ${ref(namespace, name)}`, 'GET', resourcePath(r, namespace, name));
  }

  /** GET one object, or undefined when it does not exist. */
  async getOrUndefined<T extends KubernetesObject>(
    r: ResourceType,
    name: string,
    namespace?: string,
  ): Promise<T | undefined> {
    try {
      return await this.get<T>(r, name, namespace);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** One page of a list (namespace undefined: all namespaces). */
  list<T extends KubernetesObject>(
    r: ResourceType,
    namespace?: string,
    options: ListOptions = {},
  ): Promise<KubernetesListObject<T>> {
    return this.#request(`list ${r.plural}${namespace ? ` in ${namespace}` : ''}`, 'GET', resourcePath(r, namespace), {
      labelSelector: options.labelSelector,
      fieldSelector: options.fieldSelector,
      limit: options.limit === undefined ? undefined : String(options.limit),
      continue: options.continue,
      resourceVersion: options.resourceVersion,
      resourceVersionMatch: options.resourceVersionMatch,
    });
  }

  /** Every page of a list: the items and the collection's resourceVersion (the point to watch from). */
  async listAll<T extends KubernetesObject>(
    r: ResourceType,
    namespace?: string,
    options: Omit<ListOptions, 'continue'> = {},
  ): Promise<{ items: T[]; resourceVersion: string }> {
    const items: T[] = [];
    let cont: string | undefined;
    let resourceVersion = '';
    do {
      const page = await this.list<T>(r, namespace, { limit: 500, ...options, continue: cont });
      items.push(...page.items);
      resourceVersion = page.metadata?.resourceVersion ?? resourceVersion;
      cont = page.metadata?._continue ?? (page.metadata as { continue?: string } | undefined)?.continue;
    } while (cont);
    return { items, resourceVersion };
  }

  /** POST. Throws already-exists when the name is taken. */
  create<T extends KubernetesObject>(r: ResourceType, obj: T, options?: WriteOptions): Promise<T> {
    const ns = obj.metadata?.namespace;
    return this.#request(
      `create ${r.plural} ${ref(ns, obj.metadata?.name)}`,
      'POST',
      resourcePath(r, ns),
      this.#writeQuery(options),
      {
        type: 'application/json',
        data: withTypeMeta(r, obj),
      },
    );
  }

  /**
   * Creates obj, or returns the existing object of that name when it already exists (idempotent creation, e.g. of
   * a deterministic SalvageRecord). `created` says which.
   */
  async createOrGet<T extends KubernetesObject>(
    r: ResourceType,
    obj: T,
    options?: WriteOptions,
  ): Promise<{ object: T; created: boolean }> {
    try {
      return { object: await this.create(r, obj, options), created: true };
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      const name = obj.metadata?.name;
      if (!name) throw err; // generateName never collides by name
      return { object: await this.get<T>(r, name, obj.metadata?.namespace), created: false };
    }
  }

  /**
   * PUT the whole object. metadata.resourceVersion is required: the write succeeds only if nobody changed the object
   * since it was read, else a conflict is thrown (re-read and retry).
   */
  update<T extends KubernetesObject>(r: ResourceType, obj: T, options?: WriteOptions): Promise<T> {
    return this.#put(r, obj, undefined, options);
  }

  /** PUT the status subresource, guarded by metadata.resourceVersion exactly like update(). Spec is not written. */
  updateStatus<T extends KubernetesObject>(r: ResourceType, obj: T, options?: WriteOptions): Promise<T> {
    return this.#put(r, obj, 'status', options);
  }

  /** PUT another subresource (a CertificateSigningRequest's `approval`), guarded by resourceVersion like update(). */
  updateSubresource<T extends KubernetesObject>(
    r: ResourceType,
    obj: T,
    subresource: string,
    options?: WriteOptions,
  ): Promise<T> {
    return this.#put(r, obj, subresource, options);
  }

  async #put<T extends KubernetesObject>(
    r: ResourceType,
    obj: T,
    sub: string | undefined,
    options?: WriteOptions,
  ): Promise<T> {
    const { name, namespace, resourceVersion } = obj.metadata ?? {};
    if (!name) throw new ToteError('terminal', 'MissingName', `update ${r.plural}: object has no metadata.name`);
    if (!resourceVersion)
      throw new ToteError(
        'terminal',
        'MissingResourceVersion',
        `update ${r.plural} ${ref(namespace, name)}: metadata.resourceVersion is required (optimistic lock)`,
      );
    return this.#request(
      `update ${r.plural}${sub ? '/' + sub : ''} ${ref(namespace, name)}`,
      'PUT',
      resourcePath(r, namespace, name, sub),
      this.#writeQuery(options),
      {
        type: 'application/json',
        data: withTypeMeta(r, obj),
      },
    );
  }

  /**
   * JSON merge patch (RFC 7386). Pass `resourceVersion` to make it conditional: the server then refuses with a
   * conflict when the object changed since that version.
   */
  mergePatch<T extends KubernetesObject>(
    r: ResourceType,
    name: string,
    namespace: string | undefined,
    patch: Record<string, unknown>,
    options: WriteOptions & { resourceVersion?: string; subresource?: 'status' } = {},
  ): Promise<T> {
    let body = patch;
    if (options.resourceVersion !== undefined) {
      const metadata = (patch.metadata as Record<string, unknown> | undefined) ?? {};
      body = { ...patch, metadata: { ...metadata, resourceVersion: options.resourceVersion } };
    }
    return this.#request(
      `patch ${r.plural}${options.subresource ? '/' + options.subresource : ''} ${ref(namespace, name)}`,
      'PATCH',
      resourcePath(r, namespace, name, options.subresource),
      this.#writeQuery(options),
      {
        type: 'application/merge-patch+json',
        data: body,
      },
    );
  }

  /** Merge patch of the status subresource, conditional on resourceVersion when given. */
  patchStatus<T extends KubernetesObject>(
    r: ResourceType,
    name: string,
    namespace: string | undefined,
    status: unknown,
    options: WriteOptions & { resourceVersion?: string } = {},
  ): Promise<T> {
    return this.mergePatch<T>(r, name, namespace, { status }, { ...options, subresource: 'status' });
  }

  /**
   * JSON patch (RFC 6902): precise edits such as removing one finalizer or one label. Put a `test` operation first to
   * make it conditional (e.g. on /metadata/resourceVersion): a failed test is refused by the server (422).
   */
  jsonPatch<T extends KubernetesObject>(
    r: ResourceType,
    name: string,
    namespace: string | undefined,
    operations: readonly JsonPatchOperation[],
    options: WriteOptions & { subresource?: 'status' } = {},
  ): Promise<T> {
    return this.#request(
      `patch ${r.plural} ${ref(namespace, name)}`,
      'PATCH',
      resourcePath(r, namespace, name, options.subresource),
      this.#writeQuery(options),
      {
        type: 'application/json-patch+json',
        data: operations,
      },
    );
  }

  /**
   * DELETE. With `uid` and/or `resourceVersion` preconditions, deletes only that very object (never a successor of the
   * same name). Returns false when it was already gone.
   */
  async delete(
    r: ResourceType,
    name: string,
    namespace: string | undefined,
    options: {
      uid?: string;
      resourceVersion?: string;
      gracePeriodSeconds?: number;
      propagationPolicy?: 'Foreground' | 'Background' | 'Orphan';
      dryRun?: boolean;
    } = {},
  ): Promise<boolean> {
    const preconditions =
      options.uid !== undefined || options.resourceVersion !== undefined
        ? { uid: options.uid, resourceVersion: options.resourceVersion }
        : undefined;
    try {
      await this.#request(
        `delete ${r.plural} ${ref(namespace, name)}`,
        'DELETE',
        resourcePath(r, namespace, name),
        {},
        {
          type: 'application/json',
          data: {
            apiVersion: 'v1',
            kind: 'DeleteOptions',
            preconditions,
            gracePeriodSeconds: options.gracePeriodSeconds,
            propagationPolicy: options.propagationPolicy,
            dryRun: options.dryRun ? ['All'] : undefined,
          },
        },
      );
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }
}

function ref(namespace: string | undefined, name: string | undefined): string {
  return namespace ? `${namespace}/${name ?? ''}` : (name ?? '');
}

function withTypeMeta<T extends KubernetesObject>(r: ResourceType, obj: T): T {
  return { ...obj, apiVersion: obj.apiVersion ?? apiVersionOf(r), kind: obj.kind ?? kindGuess(r) };
}

/** Kind for the well-known types when the caller left it out (the server requires it on writes). */
function kindGuess(r: ResourceType): string | undefined {
  const known: Record<string, string> = {
    pods: 'Pod',
    nodes: 'Node',
    namespaces: 'Namespace',
    configmaps: 'ConfigMap',
    secrets: 'Secret',
    leases: 'Lease',
    events: 'Event',
  };
  return known[r.plural];
}
