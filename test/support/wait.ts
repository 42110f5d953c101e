// Waiting on the cluster by watching, with a deadline: list once, test the predicate, then follow a watch from the
// list's resourceVersion and test every event. No sleeps. On timeout the error shows the last state seen, which is
// what a failing test needs to explain itself.
import { request } from 'node:https';
import type { RequestOptions } from 'node:https';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import type { KubernetesObject, V1Pod } from '@kubernetes/client-node';
import type { ClusterEnv } from './cluster.ts';

export interface WaitOptions {
  timeoutMs?: number;
  /** Described in the timeout error. */
  what?: string;
}

function kubeConfigFor(env: ClusterEnv): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(env.kubeconfig);
  return kc;
}

/**
 * Follows a collection (list, then watch from the list's resourceVersion; list again whenever the server ends the
 * watch) and calls `decide` with the current objects by name after every change, until it returns a result (not
 * undefined). Rejects after the deadline (default 60 s) showing `describe(objects)`.
 */
export async function watchUntil<T extends KubernetesObject, R>(
  env: ClusterEnv,
  collectionPath: string,
  query: { fieldSelector?: string; labelSelector?: string },
  decide: (objects: ReadonlyMap<string, T>) => R | undefined,
  options: WaitOptions & { describe?: (objects: ReadonlyMap<string, T>) => string } = {},
): Promise<R> {
  const kc = kubeConfigFor(env);
  const timeoutMs = options.timeoutMs ?? 60_000;
  const objects = new Map<string, T>();
  let controller: AbortController | undefined;
  let timer: NodeJS.Timeout | undefined;
  let settled = false;

  return new Promise<R>((resolve, reject) => {
    const finish = (err: Error | undefined, result?: R) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      controller?.abort();
      if (err) reject(err);
      else resolve(result as R);
    };
    const evaluate = () => {
      try {
        const r = decide(objects);
        if (r !== undefined) finish(undefined, r);
      } catch (err) {
        finish(err as Error);
      }
    };
    timer = setTimeout(() => {
      const seen = options.describe
        ? options.describe(objects)
        : JSON.stringify([...objects.values()], null, 1).slice(0, 4000);
      finish(
        new Error(`timed out after ${timeoutMs} ms waiting for ${options.what ?? collectionPath}; last seen: ${seen}`),
      );
    }, timeoutMs);

    const params = new URLSearchParams();
    if (query.fieldSelector) params.set('fieldSelector', query.fieldSelector);
    if (query.labelSelector) params.set('labelSelector', query.labelSelector);
    const listAndWatch = async () => {
      if (settled) return;
      const list = (await getJson(kc, `${collectionPath}?${params}`)) as {
        items: T[];
        metadata?: { resourceVersion?: string };
      };
      objects.clear();
      for (const item of list.items) objects.set(item.metadata?.name ?? '', item);
      evaluate();
      if (settled) return;
      controller = await new Watch(kc).watch(
        collectionPath,
        { ...query, resourceVersion: list.metadata?.resourceVersion, allowWatchBookmarks: true },
        (type, obj: T) => {
          const name = obj.metadata?.name ?? '';
          if (type === 'DELETED') objects.delete(name);
          else if (type === 'ADDED' || type === 'MODIFIED') objects.set(name, obj);
          else return;
          evaluate();
        },
        // The server (or client-node's inactivity timeout) ends watches now and then: list and watch again.
        () => void listAndWatch().catch((err: Error) => finish(err)),
      );
    };
    listAndWatch().catch((err: Error) => finish(err));
  });
}

/**
 * Resolves with the object named `name` in the collection at `collectionPath` (e.g. `/api/v1/namespaces/ns/pods`) once
 * `predicate(object)` holds; `predicate(undefined)` is asked while the object does not exist (so waiting for deletion
 * works too).
 */
export async function waitForObject<T extends KubernetesObject>(
  env: ClusterEnv,
  collectionPath: string,
  name: string,
  predicate: (obj: T | undefined) => boolean,
  options: WaitOptions = {},
): Promise<T | undefined> {
  const result = await watchUntil<T, { obj: T | undefined }>(
    env,
    collectionPath,
    { fieldSelector: `metadata.name=${name}` },
    (objects) => (predicate(objects.get(name)) ? { obj: objects.get(name) } : undefined),
    { what: `${collectionPath}/${name}`, ...options },
  );
  return result.obj;
}

/** The first object of the collection (optionally label-selected) that satisfies `predicate`. */
export function waitForAny<T extends KubernetesObject>(
  env: ClusterEnv,
  collectionPath: string,
  predicate: (obj: T) => boolean,
  options: WaitOptions & { labelSelector?: string } = {},
): Promise<T> {
  return watchUntil<T, T>(
    env,
    collectionPath,
    options.labelSelector ? { labelSelector: options.labelSelector } : {},
    (objects) => [...objects.values()].find(predicate),
    options,
  );
}

/** A raw GET through the kubeconfig's TLS setup (client-node has no generic list for arbitrary paths). */
async function getJson(kc: KubeConfig, path: string): Promise<unknown> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('no current cluster in kubeconfig');
  const opts: RequestOptions = {};
  await kc.applyToHTTPSOptions(opts);
  return new Promise((resolve, reject) => {
    const req = request(new URL(cluster.server + path), { ...opts, method: 'GET' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        if ((res.statusCode ?? 500) >= 300)
          reject(new Error(`GET ${path}: HTTP ${res.statusCode} ${body.slice(0, 300)}`));
        else resolve(JSON.parse(body));
      });
    });
    req.on('error', reject);
    req.end();
  });
}

// --- pods -----------------------------------------------------------------------------------------------------------

export const podsPath = (namespace: string) => `/api/v1/namespaces/${namespace}/pods`;

export function waitForPod(
  env: ClusterEnv,
  namespace: string,
  name: string,
  predicate: (pod: V1Pod) => boolean,
  options: WaitOptions = {},
): Promise<V1Pod> {
  return waitForObject<V1Pod>(env, podsPath(namespace), name, (p) => p !== undefined && predicate(p), {
    what: `pod ${namespace}/${name}`,
    ...options,
  }) as Promise<V1Pod>;
}

/** Waiting reason of a container (`ErrImagePull`, `ImagePullBackOff`, `CreateContainerError`, …), if waiting. */
export function waitingReason(pod: V1Pod, container?: string): string | undefined {
  const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
  const s = container ? statuses.find((c) => c.name === container) : statuses.find((c) => c.state?.waiting);
  return s?.state?.waiting?.reason;
}

export function isPodReady(pod: V1Pod): boolean {
  return (
    pod.status?.phase === 'Running' && !!pod.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')
  );
}

export const waitForPodReady = (env: ClusterEnv, namespace: string, name: string, options: WaitOptions = {}) =>
  waitForPod(env, namespace, name, isPodReady, { what: `pod ${namespace}/${name} to be Ready`, ...options });

export const waitForPodWaiting = (
  env: ClusterEnv,
  namespace: string,
  name: string,
  reasons: string[],
  options: WaitOptions = {},
) =>
  waitForPod(env, namespace, name, (p) => reasons.includes(waitingReason(p) ?? ''), {
    what: `pod ${namespace}/${name} waiting with ${reasons.join(' or ')}`,
    ...options,
  });

export const waitForDeleted = (env: ClusterEnv, collectionPath: string, name: string, options: WaitOptions = {}) =>
  waitForObject(env, collectionPath, name, (o) => o === undefined, {
    what: `${collectionPath}/${name} to be deleted`,
    ...options,
  });

/**
 * For state outside the API server that cannot be watched (a node's containerd): asks `check` every `intervalMs`
 * (default 200 ms) until it returns a result (not undefined). Rejects after the deadline (default 60 s) with `what`
 * and the last answer's description.
 */
export async function pollUntil<R>(
  check: () => Promise<R | undefined>,
  options: WaitOptions & { intervalMs?: number; describe?: () => Promise<string> } = {},
): Promise<R> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  for (;;) {
    const result = await check();
    if (result !== undefined) return result;
    if (Date.now() > deadline) {
      const last = options.describe ? await options.describe() : '';
      throw new Error(`timed out waiting for ${options.what ?? 'a condition'}${last ? `; last seen:\n${last}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 200));
  }
}
