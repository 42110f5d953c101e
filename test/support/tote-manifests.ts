// tote installed as a user installs it (issue 20, `TOTE_INSTALL=manifests make tote-up`): on real kubelets, the image
// `make image-offline` assembles is loaded into every node's containerd (hack/image/load-nodes.sh, under the name the
// manifests run), hack/certs/make-certs.sh makes and applies the certificates, and `kubectl apply -k config/default`
// installs everything exactly as shipped. The controller Deployment and the agent DaemonSet then run as pods under the
// kubelets, with their probes, RBAC, hostPaths, security contexts and in-cluster API address (docs/cluster.md).
// installToteChart does the same with the Helm chart in config/helm/tote instead of config/default. Simulated nodes
// run no containers, so this needs real ones.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { V1Pod } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { kubectl, repoRoot } from './cluster.ts';
import type { ClusterEnv } from './cluster.ts';
import { chartDir, helm } from './helm.ts';
import { toteNamespace, totePaths } from './tote.ts';
import { isPodReady, watchUntil } from './wait.ts';

const run = promisify(execFile);

export interface ManifestInstall {
  /** The image reference the pods run (loaded into every node, never pulled). */
  image: string;
  /** make-certs.sh's output directory (CA, controller certificate, transfer keys). */
  certs: string;
  /** tote's CA certificate (PEM), which signs the agents' certificates. */
  caCertificate: string;
  controllers: V1Pod[];
  agents: V1Pod[];
}

/** How `make tote-up` runs tote: TOTE_INSTALL=processes (the default), manifests or chart. */
export function toteInstallMode(value = process.env.TOTE_INSTALL): 'processes' | 'manifests' | 'chart' {
  if (value === undefined || value === '' || value === 'processes') return 'processes';
  if (value === 'manifests' || value === 'chart') return value;
  throw new Error(`TOTE_INSTALL must be processes, manifests or chart, got "${value}"`);
}

async function must(result: Promise<{ code: number; stdout: string; stderr: string }>, what: string) {
  const r = await result;
  if (r.code !== 0) throw new Error(`${what}: ${r.stderr || r.stdout}`);
  return r;
}

export interface InstallOptions {
  /** The image reference when an earlier install loaded it into every node already (else it is built and loaded). */
  loadedImage?: string;
}

/** Loads the image, makes the certificates, applies config/default and waits until every pod is Ready. */
export async function installToteManifests(env: ClusterEnv, options: InstallOptions = {}): Promise<ManifestInstall> {
  const prepared = await prepareInstall(env, 'config/default', options);
  // A release of the chart (installToteChart) goes first, so Helm keeps no record of objects it no longer owns.
  const releases = await must(
    kubectl(env, ['get', 'secrets', '-n', toteNamespace, '-l', 'owner=helm,name=tote', '-o', 'name']),
    'looking for a Helm release',
  );
  if (releases.stdout.trim() !== '') {
    const result = await helm(['uninstall', 'tote', `--namespace=${toteNamespace}`, '--wait'], env);
    if (result.code !== 0) throw new Error(`helm uninstall: ${result.stderr}`);
  }
  await must(kubectl(env, ['apply', '-k', join(repoRoot, 'config/default')]), 'kubectl apply -k config/default');
  return { ...prepared, ...(await waitForToteRollout(env)) };
}

/**
 * The same with the Helm chart (release `tote` in tote-system): what config/default installed is removed first, apart
 * from the Namespace and the CRDs, which the cluster had before (hack/cluster/up.sh applies crds/, the chart's source
 * too), so the chart runs with crds.install=false. Waits until every pod is Ready.
 */
export async function installToteChart(env: ClusterEnv, options: InstallOptions = {}): Promise<ManifestInstall> {
  const prepared = await prepareInstall(env, 'the chart', options);
  const rendered = await must(
    kubectl(env, ['kustomize', join(repoRoot, 'config/default')]),
    'rendering config/default',
  );
  const installed = parseAllDocuments(rendered.stdout)
    .map((doc) => doc.toJS() as { kind: string })
    .filter((o) => o.kind !== 'Namespace' && o.kind !== 'CustomResourceDefinition');
  await must(
    kubectl(env, ['delete', '-f', '-', '--ignore-not-found', '--wait'], {
      input: JSON.stringify({ kind: 'List', apiVersion: 'v1', items: installed }),
    }),
    'removing what config/default installed',
  );
  const result = await helm(
    ['upgrade', '--install', 'tote', chartDir, `--namespace=${toteNamespace}`, '--set', 'crds.install=false'],
    env,
  );
  if (result.code !== 0) throw new Error(`helm upgrade --install: ${result.stderr}`);
  return { ...prepared, ...(await waitForToteRollout(env)) };
}

/** The image on every node, the namespace, and make-certs.sh's Secrets and ConfigMaps in it. */
async function prepareInstall(
  env: ClusterEnv,
  what: string,
  options: InstallOptions,
): Promise<Omit<ManifestInstall, 'controllers' | 'agents'>> {
  if (env.kubelet !== 'real')
    throw new Error(`tote from ${what} needs real kubelets (TOTE_KUBELET=real); ${env.dir} has simulated nodes`);
  const image =
    options.loadedImage ??
    (
      await run(join(repoRoot, 'hack/image/load-nodes.sh'), [], {
        env: { ...process.env, TOTE_CLUSTER_DIR: env.dir },
        timeout: 600_000,
        maxBuffer: 16 << 20,
      })
    ).stdout.trim();
  // The namespace first, so the Secrets exist before the pods that mount them are created.
  await must(kubectl(env, ['apply', '-f', join(repoRoot, 'config/default/namespace.yaml')]), 'the namespace');
  const certs = totePaths(env).certs;
  await run(join(repoRoot, 'hack/certs/make-certs.sh'), ['--out', certs, '--apply'], {
    env: { ...process.env, TOTE_KUBECTL: env.kubectl, KUBECONFIG: env.kubeconfig },
  });
  return { image, certs, caCertificate: readFileSync(join(certs, 'ca.crt'), 'utf8') };
}

/**
 * Waits until the Deployment's replicas and one agent per node are Ready (their probes pass) and no pod of an older
 * rollout is left. The timeout error names the pods it saw.
 */
export async function waitForToteRollout(
  env: ClusterEnv,
  timeoutMs = 180_000,
): Promise<{ controllers: V1Pod[]; agents: V1Pod[] }> {
  const deployment = await must(
    kubectl(env, ['get', 'deployment', 'tote-controller', '-n', toteNamespace, '-o', 'jsonpath={.spec.replicas}']),
    'the controller Deployment',
  );
  const replicas = Number(deployment.stdout);
  const ready = (p: V1Pod) => !p.metadata?.deletionTimestamp && isPodReady(p);
  const named = (pods: ReadonlyMap<string, V1Pod>, name: string) =>
    [...pods.values()].filter((p) => p.metadata?.labels?.['app.kubernetes.io/name'] === name);
  return watchUntil<V1Pod, { controllers: V1Pod[]; agents: V1Pod[] }>(
    env,
    `/api/v1/namespaces/${toteNamespace}/pods`,
    { labelSelector: 'app.kubernetes.io/part-of=tote' },
    (pods) => {
      const controllers = named(pods, 'tote-controller');
      const agents = named(pods, 'tote-agent');
      const agentNodes = new Set(agents.filter(ready).map((p) => p.spec?.nodeName));
      const settled =
        controllers.length === replicas &&
        controllers.every(ready) &&
        agents.length === env.nodes.length &&
        env.nodes.every((n) => agentNodes.has(n));
      return settled ? { controllers, agents } : undefined;
    },
    {
      timeoutMs,
      what: `${replicas} controller pods and an agent pod on each of ${env.nodes.join(', ')} Ready`,
      describe: (pods) =>
        [...pods.values()]
          .map((p) => {
            const waiting = p.status?.containerStatuses?.[0]?.state?.waiting;
            return `${p.metadata?.name}@${p.spec?.nodeName} ${p.status?.phase}${ready(p) ? ' Ready' : ''}${waiting ? ` ${waiting.reason}: ${waiting.message}` : ''}`;
          })
          .join('; '),
    },
  );
}

/** Removes the controller Deployment and the agent DaemonSet (CRDs, records and RBAC stay), waiting for their pods. */
export async function uninstallToteWorkloads(env: ClusterEnv): Promise<void> {
  await must(
    kubectl(env, [
      'delete',
      'deployment/tote-controller',
      'daemonset/tote-agent',
      '-n',
      toteNamespace,
      '--ignore-not-found',
      '--wait',
    ]),
    'deleting tote’s workloads',
  );
}
