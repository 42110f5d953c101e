// `make demo`: tote's main job, live, on the local cluster. An image survives only in node-a's containerd after its
// registry lost it; a Deployment lands on node-b and node-c and gets stuck; tote copies the image to both nodes
// (one SalvageRecord each), the pods are recreated and run, and the demo ends with a rescued container's own log line.
// The cluster stays up afterwards for exploring. Real kubelets by default (TOTE_KUBELET=simulated for the simulator:
// then nothing runs and there is no log to show).
import { randomBytes } from 'node:crypto';
import type { V1Pod } from '@kubernetes/client-node';
import type { SalvageRecord } from '../../src/api/index.ts';
import { ensureCluster, kubectl } from '../../test/support/cluster.ts';
import type { ClusterEnv } from '../../test/support/cluster.ts';
import { registries, registryDigest } from '../../test/support/images.ts';
import { deployment, lostImage, recordsPath } from '../../test/support/salvage.ts';
import { ensureTote } from '../../test/support/tote.ts';
import { podsPath, watchUntil } from '../../test/support/wait.ts';

const mib = 1024 * 1024;
const step = (text: string) => console.log(`\n\x1b[1m==> ${text}\x1b[0m`);
const note = (text: string) => console.log(`    ${text}`);

async function sh(env: ClusterEnv, args: string[], input?: string): Promise<string> {
  const r = await kubectl(env, args, input !== undefined ? { input } : {});
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function bar(record: SalvageRecord): string {
  const p = record.status?.progress;
  if (!p?.totalBytes) return '';
  const done = (p.presentBytes ?? 0) + (p.transferredBytes ?? 0);
  const filled = Math.round((done / p.totalBytes) * 24);
  return ` [${'#'.repeat(filled)}${'.'.repeat(24 - filled)}] ${p.percent ?? ''} of ${p.size ?? ''}`;
}

async function main(): Promise<void> {
  process.env.TOTE_KUBELET ??= 'real';
  step('Local cluster: control plane built from the Kubernetes Go modules, one containerd per node, two registries');
  const env = await ensureCluster();
  note(`nodes: ${env.nodes.join(', ')} (${env.kubelet} kubelets; containerd ${env.vars.TOTE_CONTAINERD ?? '1.6'})`);
  note(`source registry ${env.sourceRegistry}`);

  step('tote: one agent per node beside its containerd, and the controller (running with its shipped RBAC)');
  const tote = await ensureTote(env);
  note(`controller pid ${tote.controller.pid}; agents: ${[...tote.agents.keys()].join(', ')}`);

  const id = randomBytes(2).toString('hex');
  const namespace = `shop-${id}`;
  step(`A namespace and a SalvagePolicy that covers it (namespace ${namespace})`);
  await sh(env, ['create', 'namespace', namespace]);
  await sh(env, ['label', 'namespace', namespace, `tote.dev/demo=${id}`]);
  const policy = {
    apiVersion: 'tote.dev/v1alpha1',
    kind: 'SalvagePolicy',
    metadata: { name: `demo-${id}` },
    spec: {
      namespaceSelector: { matchLabels: { 'tote.dev/demo': id } },
      // Slowed down on purpose so the progress is visible; a real policy would leave bandwidth alone or cap it higher.
      limits: { bandwidthPerTransfer: '24Mi', maxConcurrentTransfers: 2 },
      recordTTL: '24h',
    },
  };
  await sh(env, ['apply', '-f', '-'], JSON.stringify(policy));
  note(`SalvagePolicy demo-${id}: mode Salvage, 24Mi/s per transfer, records kept 24h`);

  step(
    'An image that only node-a still has: pushed, pulled by node-a, then deleted from the registry and garbage-collected',
  );
  const image = await lostImage(
    env,
    {
      repository: `shop/storefront-${id}`,
      tag: '2.4.1',
      layers: 6,
      layerSize: 12 * mib,
      command: ['sh', '-c', 'echo "storefront 2.4.1 serving from $(hostname)"; exec sleep 86400'],
    },
    ['node-a'],
  );
  const ref = image.reference(env.sourceRegistry);
  const served = await registryDigest(registries(env).source, image.repository, image.tag);
  note(`${ref} (${image.target.digest.slice(0, 19)}…, ${Math.round((6 * 12 * mib) / mib)} MiB in 6 layers)`);
  note(`registry now answers: ${served ?? 'not found'}; node-a's containerd still holds every blob`);

  step('A Deployment of 2 replicas that lands on node-b and node-c: both pods will fail to pull');
  await deployment(env, namespace, 'storefront', ref, ['node-b', 'node-c'], 2);

  step('Watching: pods get stuck, tote opens one SalvageRecord per node and moves the image');
  const seen = new Map<string, string>();
  const podStates = new Map<string, string>();
  const pods = watchUntil<V1Pod, V1Pod[]>(
    env,
    podsPath(namespace),
    {},
    (objects): V1Pod[] | undefined => {
      for (const pod of objects.values()) {
        const name = pod.metadata?.name ?? '';
        const status = pod.status?.containerStatuses?.[0];
        const state = pod.metadata?.deletionTimestamp
          ? 'Terminating (deleted by tote so its ReplicaSet recreates it now)'
          : (status?.state?.waiting?.reason ?? (status?.ready ? 'Running' : (pod.status?.phase ?? 'Pending')));
        if (podStates.get(name) !== state) {
          podStates.set(name, state);
          console.log(`    pod ${name.padEnd(30)} ${pod.spec?.nodeName ?? ''}  ${state}`);
        }
      }
      const running = [...objects.values()].filter(
        (p) => !p.metadata?.deletionTimestamp && p.status?.containerStatuses?.[0]?.ready,
      );
      return running.length >= 2 ? running : undefined;
    },
    { timeoutMs: 300_000, what: 'two running storefront pods' },
  );
  const records = watchUntil<SalvageRecord & { metadata: object }, SalvageRecord[]>(
    env,
    recordsPath(namespace),
    {},
    (objects) => {
      for (const r of objects.values()) {
        const line = `${r.status?.phase ?? 'Pending'}${r.status?.phase === 'Transferring' ? bar(r) : ''}`;
        const name = r.metadata?.name ?? '';
        if (seen.get(name) !== line) {
          seen.set(name, line);
          const from = r.status?.sourceNode ? `${r.status.sourceNode} → ` : '';
          console.log(`    record ${name.padEnd(24)} ${from}${r.spec.targetNode}  ${line}`);
        }
      }
      const all = [...objects.values()];
      return all.length >= 2 && all.every((r) => r.status?.phase === 'Completed') ? all : undefined;
    },
    { timeoutMs: 300_000, what: 'two Completed SalvageRecords' },
  );
  const [, running] = await Promise.all([records, pods]);

  step('kubectl get salvagerecords');
  console.log(await sh(env, ['get', 'salvagerecords', '-n', namespace, '-o', 'wide']));
  step('kubectl describe salvagerecord (the whole story)');
  const first = (await records)[0]?.metadata?.name ?? '';
  console.log(await sh(env, ['describe', 'salvagerecord', '-n', namespace, first]));
  step('kubectl get pods -o wide');
  console.log(await sh(env, ['get', 'pods', '-n', namespace, '-o', 'wide']));

  step('Done: the cluster stays up');
  note(`export KUBECONFIG=${env.kubeconfig}`);
  note(`alias kubectl=${env.kubectl}`);
  note(`kubectl get salvagerecords -A            # or: kubectl get svr -A / kubectl get tote -A`);
  note(`kubectl get salvagepolicy demo-${id} -o yaml`);
  note(`${tote.controller.healthUrl.replace(/\/$/, '')}/readyz and ${tote.controller.metricsUrl}/metrics`);
  note(`logs: ${tote.paths.logs}`);
  note('tear down: make tote-down cluster-down');

  const rescued = running[0]?.metadata?.name ?? '';
  if (env.kubelet === 'real') {
    step(`kubectl logs ${rescued} (the rescued container, running on ${running[0]?.spec?.nodeName ?? ''})`);
    // The line is written as the container starts; poll briefly (with a deadline) in case the kubelet is behind.
    const deadline = Date.now() + 15_000;
    const logs = () => sh(env, ['logs', '-n', namespace, rescued]).then((out) => out.trim());
    let log = await logs();
    while (!log && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      log = await logs();
    }
    console.log(`    ${log || '(no output yet)'}`);
  } else {
    note('simulated nodes run no container, so there is no log to show (TOTE_KUBELET=real make demo)');
  }
}

await main();
