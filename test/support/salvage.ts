// Building blocks of salvage scenarios on the local cluster: a policy scoped to one test namespace, an image that
// survives only on chosen nodes after its registry lost it, workloads pinned to nodes, and waiting on records.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { V1Pod } from '@kubernetes/client-node';
import type { SalvagePolicy, SalvageRecord } from '../../src/api/index.ts';
import { kubectl } from './cluster.ts';
import type { ClusterEnv, TestNamespace } from './cluster.ts';
import { buildImage, deleteImageFromRegistry, pullToNode, pushImage, registries } from './images.ts';
import type { ImageSpec, TestImage } from './images.ts';
import { podsPath, watchUntil } from './wait.ts';
import type { WaitOptions } from './wait.ts';

export const recordsPath = (namespace: string) => `/apis/tote.dev/v1alpha1/namespaces/${namespace}/salvagerecords`;

/** `kubectl apply` of one object (JSON); throws with kubectl's stderr on failure. */
export async function apply(env: ClusterEnv, obj: unknown): Promise<void> {
  const result = await kubectl(env, ['apply', '-f', '-'], { input: JSON.stringify(obj) });
  if (result.code !== 0) throw new Error(result.stderr);
}

/** A SalvagePolicy selecting only `namespace` (through a label it puts on it); deleted after the test. */
export async function scopedPolicy(
  env: ClusterEnv,
  ns: TestNamespace,
  spec: SalvagePolicy['spec'] = {},
  t?: { after?: (fn: () => Promise<void>) => void },
): Promise<string> {
  const name = `p-${ns.name}`.slice(0, 60);
  const scope = randomBytes(4).toString('hex');
  await must(kubectl(env, ['label', 'namespace', ns.name, `tote.dev/test-scope=${scope}`, '--overwrite']));
  await apply(env, {
    apiVersion: 'tote.dev/v1alpha1',
    kind: 'SalvagePolicy',
    metadata: { name },
    spec: { namespaceSelector: { matchLabels: { 'tote.dev/test-scope': scope } }, ...spec },
  });
  t?.after?.(async () => {
    await kubectl(env, ['delete', 'salvagepolicy', name, '--wait=false']);
  });
  return name;
}

/**
 * A Secret a policy may name: tote reads Secrets in its own namespace only, so it lives in tote-system, named after the
 * test's namespace so tests never share one, and is deleted after the test. Returns the reference for the policy.
 */
export async function policySecret(
  env: ClusterEnv,
  ns: TestNamespace,
  name: string,
  stringData: Record<string, string>,
  type = 'Opaque',
  t?: { after?: (fn: () => Promise<void>) => void },
): Promise<{ namespace: string; name: string }> {
  const ref = { namespace: 'tote-system', name: `${ns.name}-${name}` };
  await secret(env, ref.namespace, ref.name, stringData, type);
  t?.after?.(async () => {
    await kubectl(env, ['delete', 'secret', '-n', ref.namespace, ref.name, '--ignore-not-found', '--wait=false']);
  });
  return ref;
}

/**
 * scopedPolicy with a backup to the cluster's TLS + htpasswd registry under `target`: the registry's credentials
 * (dockerconfigjson) and CA are put in Secrets (policySecret) and referenced from `spec.backup`.
 */
export async function backupPolicy(
  env: ClusterEnv,
  ns: TestNamespace,
  target: string,
  spec: SalvagePolicy['spec'] = {},
  t?: { after?: (fn: () => Promise<void>) => void },
): Promise<string> {
  const username = env.backupRegistryUser;
  const password = env.backupRegistryPassword;
  const auth = Buffer.from(`${username}:${password}`).toString('base64');
  const credentialsSecretRef = await policySecret(
    env,
    ns,
    'backup-credentials',
    { '.dockerconfigjson': JSON.stringify({ auths: { [env.backupRegistry]: { username, password, auth } } }) },
    'kubernetes.io/dockerconfigjson',
    t,
  );
  const caSecretRef = await policySecret(
    env,
    ns,
    'backup-ca',
    { 'ca.crt': readFileSync(env.caFile, 'utf8') },
    'Opaque',
    t,
  );
  return scopedPolicy(env, ns, { ...spec, backup: { target, credentialsSecretRef, caSecretRef } }, t);
}

async function must(result: Promise<{ code: number; stderr: string }>): Promise<void> {
  const r = await result;
  if (r.code !== 0) throw new Error(r.stderr);
}

export interface HolderOptions {
  /** Pull by digest (`repo@sha256:…`) instead of by tag, so no node lists the tag. */
  byDigest?: boolean;
}

/** An image pushed to the source registry and pulled (CRI, as the kubelet would) by `holders`; the registry keeps it. */
export async function imageOnNodes(
  env: ClusterEnv,
  spec: ImageSpec,
  holders: string[],
  options: HolderOptions = {},
): Promise<TestImage> {
  const source = registries(env).source;
  const image = buildImage(spec);
  await pushImage(source, image);
  for (const node of holders) {
    const socket = env.nodeSockets.get(node);
    if (!socket) throw new Error(`unknown node ${node}`);
    await pullToNode(
      socket,
      options.byDigest ? image.digestReference(env.sourceRegistry) : image.reference(env.sourceRegistry),
    );
  }
  return image;
}

/**
 * An image that exists only in the containerd of `holders`: pushed to the source registry, pulled by those nodes as
 * the kubelet would (CRI), then deleted from the registry and garbage-collected, so no pull can succeed any more.
 */
export async function lostImage(
  env: ClusterEnv,
  spec: ImageSpec,
  holders: string[],
  options: HolderOptions = {},
): Promise<TestImage> {
  const image = await imageOnNodes(env, spec, holders, options);
  await deleteImageFromRegistry(registries(env).source, image, env.sourceRegistryConfig);
  return image;
}

/**
 * Removes one blob's data from the source registry's filesystem storage, behind the registry's back: manifests and tags
 * still resolve, but fetching the blob fails, so a pull of the tag fails (ErrImagePull) while tag resolution works.
 */
export function deleteBlobFromRegistryStorage(env: ClusterEnv, digest: string): void {
  const config = readFileSync(env.sourceRegistryConfig, 'utf8');
  const root = /rootdirectory:\s*([^\s,}]+)/.exec(config)?.[1];
  if (!root) throw new Error(`no filesystem rootdirectory in ${env.sourceRegistryConfig}`);
  const hex = digest.replace(/^sha256:/, '');
  rmSync(join(root, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex), { recursive: true, force: false });
}

/** A Secret in `namespace` with string data (`type` defaults to Opaque). */
export async function secret(
  env: ClusterEnv,
  namespace: string,
  name: string,
  stringData: Record<string, string>,
  type = 'Opaque',
): Promise<void> {
  await apply(env, { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace }, type, stringData });
}

/** Reasons and messages of the Events in a namespace (involved object kind/name included). */
export async function namespaceEvents(
  env: ClusterEnv,
  namespace: string,
): Promise<{ reason: string; message: string; kind: string; name: string }[]> {
  const r = await kubectl(env, ['get', 'events.events.k8s.io', '-n', namespace, '-o', 'json']);
  if (r.code !== 0) throw new Error(r.stderr);
  const items = (
    JSON.parse(r.stdout) as {
      items: { reason?: string; note?: string; regarding?: { kind?: string; name?: string } }[];
    }
  ).items;
  return items.map((e) => ({
    reason: e.reason ?? '',
    message: e.note ?? '',
    kind: e.regarding?.kind ?? '',
    name: e.regarding?.name ?? '',
  }));
}

/** An events.k8s.io Event as the tests read it. */
export interface ClusterEvent {
  metadata: object;
  reason?: string;
  type?: string;
  note?: string;
  reportingController?: string;
  regarding?: { kind?: string; name?: string };
}

/** Waits for an Event of the namespace matching `predicate` (Events go out after the write that asked for them). */
export function waitForEvent(
  env: ClusterEnv,
  namespace: string,
  predicate: (e: ClusterEvent) => boolean,
  what: string,
): Promise<ClusterEvent> {
  return watchUntil<ClusterEvent, ClusterEvent>(
    env,
    `/apis/events.k8s.io/v1/namespaces/${namespace}/events`,
    {},
    (events) => [...events.values()].find(predicate),
    { what },
  );
}

/** The SalvageRecords of a namespace, now. */
export async function listRecords(env: ClusterEnv, namespace: string): Promise<SalvageRecord[]> {
  const r = await kubectl(env, ['get', 'salvagerecords', '-n', namespace, '-o', 'json']);
  if (r.code !== 0) throw new Error(r.stderr);
  return (JSON.parse(r.stdout) as { items: SalvageRecord[] }).items;
}

/** A Deployment of `replicas` pods running `image`, on `nodes` (one pod per node when replicas equals nodes). */
export async function deployment(
  env: ClusterEnv,
  namespace: string,
  name: string,
  image: string,
  nodes: string[],
  replicas = 1,
  imagePullPolicy: 'IfNotPresent' | 'Always' = 'IfNotPresent',
): Promise<void> {
  await apply(env, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          affinity: {
            nodeAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: {
                nodeSelectorTerms: [
                  { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: nodes }] },
                ],
              },
            },
            podAntiAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: [
                { labelSelector: { matchLabels: { app: name } }, topologyKey: 'kubernetes.io/hostname' },
              ],
            },
          },
          containers: [{ name: 'app', image, imagePullPolicy }],
        },
      },
    },
  });
}

/** Waits until `count` records of the namespace satisfy `predicate`; returns them. */
export function waitForRecords(
  env: ClusterEnv,
  namespace: string,
  count: number,
  predicate: (r: SalvageRecord) => boolean,
  options: WaitOptions = {},
): Promise<SalvageRecord[]> {
  return watchUntil<SalvageRecord & { metadata: object }, SalvageRecord[]>(
    env,
    recordsPath(namespace),
    {},
    (objects) => {
      const matching = [...objects.values()].filter(predicate);
      return matching.length >= count ? matching : undefined;
    },
    {
      timeoutMs: 120_000,
      what: `${count} SalvageRecord(s) in ${namespace}`,
      describe: (objects) =>
        [...objects.values()]
          .map((r) => `${r.metadata?.name}: ${r.status?.phase ?? '-'} ${r.status?.message ?? ''}`)
          .join('\n'),
      ...options,
    },
  );
}

/** Waits until `count` pods of the namespace labelled app=`app` are Running and Ready; returns them. */
export function waitForRunningPods(
  env: ClusterEnv,
  namespace: string,
  app: string,
  count: number,
  options: WaitOptions = {},
) {
  return watchUntil<V1Pod, V1Pod[]>(
    env,
    podsPath(namespace),
    { labelSelector: `app=${app}` },
    (objects) => {
      const ready = [...objects.values()].filter(
        (p) =>
          !p.metadata?.deletionTimestamp &&
          p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
      );
      return ready.length >= count ? ready : undefined;
    },
    {
      timeoutMs: 120_000,
      what: `${count} ready pod(s) app=${app} in ${namespace}`,
      describe: (objects) =>
        [...objects.values()]
          .map(
            (p) =>
              `${p.metadata?.name} on ${p.spec?.nodeName}: ${p.status?.phase} ${JSON.stringify(p.status?.containerStatuses?.[0]?.state)}`,
          )
          .join('\n'),
      ...options,
    },
  );
}

/**
 * The digest skopeo reads at `reference` (repository@digest) in the backup registry, with its credentials: a check of
 * tote's push by a tool that is not tote.
 */
export async function skopeoBackupDigest(env: ClusterEnv, reference: string): Promise<string> {
  const { stdout } = await promisify(execFile)('skopeo', [
    'inspect',
    '--tls-verify=false',
    '--creds',
    `${env.backupRegistryUser}:${env.backupRegistryPassword}`,
    '--format',
    '{{.Digest}}',
    `docker://${reference}`,
  ]);
  return stdout.trim();
}
