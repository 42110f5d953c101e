// The Helm chart (config/helm/tote), with the Helm built from its Go module: lint; the values schema refuses what it
// does not know; with default values it renders exactly the objects of config/default (and, switched on, those of
// config/prometheus and config/grafana), so the two ways to install cannot drift apart; its CRDs are crds/; the API
// server accepts everything it renders in a server-side dry run; and install, upgrade and uninstall work on the
// local cluster.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { ensureCluster, kubectl, repoRoot, testNamespace } from '../../support/cluster.ts';
import type { ClusterEnv, TestNamespace } from '../../support/cluster.ts';
import { chartDir, helm } from '../../support/helm.ts';

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

const packageVersion = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string })
  .version;
const systemNamespace = 'tote-system';
/** Bookkeeping labels that differ between kustomize and Helm by design; neither selects on them alone. */
const bookkeepingLabels = [
  'app.kubernetes.io/instance',
  'app.kubernetes.io/managed-by',
  'app.kubernetes.io/version',
  'app.kubernetes.io/part-of',
  'helm.sh/chart',
];

/** Keys whose value is a map of labels: metadata, selectors, and a Service's plain selector. */
const labelMaps = new Set(['labels', 'matchLabels', 'selector']);

let cluster: ClusterEnv;

/** `--set` pairs for one SalvagePolicy from values. */
const policyValues = (name: string, mode: string) => [
  `policies[0].name=${name}`,
  `policies[0].spec.mode=${mode}`,
  `policies[0].spec.namespaceSelector.matchLabels.tote\\.dev/salvage=${name}`,
];

const parseObjects = (text: string): K8sObject[] =>
  parseAllDocuments(text)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);

async function kustomize(dir: string): Promise<K8sObject[]> {
  const result = await kubectl(cluster, ['kustomize', join(repoRoot, 'config', dir)]);
  assert.equal(result.code, 0, result.stderr);
  return parseObjects(result.stdout);
}

/** `helm template` of the chart as release `release` in `namespace`, with `--set` pairs. */
async function template(sets: string[] = [], release = 'tote', namespace = systemNamespace): Promise<K8sObject[]> {
  const args = ['template', release, chartDir, `--namespace=${namespace}`, ...sets.flatMap((s) => ['--set', s])];
  const result = await helm(args);
  assert.equal(result.code, 0, result.stderr);
  return parseObjects(result.stdout);
}

/** A copy without the bookkeeping labels (in metadata and in every selector) and Helm's keep annotation. */
function normalised(object: K8sObject): unknown {
  const visit = (node: unknown, key?: string): unknown => {
    if (Array.isArray(node)) return node.map((n) => visit(n));
    if (node === null || typeof node !== 'object') return node;
    const entries = Object.entries(node as Record<string, unknown>)
      .filter(([k]) => !(key !== undefined && labelMaps.has(key) && bookkeepingLabels.includes(k)))
      .filter(([k]) => !(key === 'annotations' && k === 'helm.sh/resource-policy'))
      .map(([k, v]) => [k, visit(v, k)] as const)
      .filter(([k, v]) => !((k === 'labels' || k === 'annotations') && Object.keys(v as object).length === 0));
    return Object.fromEntries(entries);
  };
  return visit(object);
}

const keyOf = (o: K8sObject) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
const byKey = (objects: K8sObject[]) => new Map(objects.map((o) => [keyOf(o), o]));

/** Asserts that the two renderings hold the same objects, equal apart from bookkeeping. */
function assertSameObjects(chart: K8sObject[], kustomized: K8sObject[]): void {
  const fromChart = byKey(chart);
  const fromConfig = byKey(kustomized);
  assert.deepEqual([...fromChart.keys()].sort(), [...fromConfig.keys()].sort(), 'the same objects');
  for (const [key, expected] of fromConfig) {
    assert.deepEqual(normalised(fromChart.get(key)!), normalised(expected), `${key} renders the same`);
  }
}

const imageOf = (o: K8sObject) =>
  (o as unknown as { spec: { template: { spec: { containers: { image: string }[] } } } }).spec.template.spec
    .containers[0]?.image;

describe('Helm chart (config/helm/tote)', () => {
  before(async () => {
    cluster = await ensureCluster();
  });

  describe('the chart itself', () => {
    it('passes helm lint --strict', async () => {
      const result = await helm(['lint', '--strict', chartDir]);
      assert.equal(result.code, 0, result.stdout + result.stderr);
    });

    it('refuses unknown values, at the top and nested, and the tag latest', async () => {
      for (const [set, field] of [
        ['replicaCount=2', "additional properties 'replicaCount'"],
        ['controller.logLevel=debug', "at '/controller': additional properties 'logLevel'"],
        ['image.tag=latest', '/image/tag'],
        ['agent.extraArgs[0]=not-a-flag', '/agent/extraArgs/0'],
      ] as const) {
        const result = await helm(['template', 'tote', chartDir, '--set', set]);
        assert.notEqual(result.code, 0, `--set ${set} is refused`);
        assert.ok(result.stderr.includes(field), `--set ${set}: ${result.stderr}`);
      }
    });

    it('carries the version of package.json: chart, appVersion, and the image tag in chart and config/', async () => {
      const chart = parse(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8')) as {
        version: string;
        appVersion: string;
      };
      assert.equal(chart.appVersion, packageVersion);
      assert.equal(chart.version, packageVersion);
      const expected = `ghcr.io/tote-dev/tote:v${packageVersion}`;
      for (const o of [...(await template()), ...(await kustomize('default'))])
        if (o.kind === 'Deployment' || o.kind === 'DaemonSet') assert.equal(imageOf(o), expected, keyOf(o));
    });

    it('pins the image by digest when one is given', async () => {
      const digest = `sha256:${'ab'.repeat(32)}`;
      const objects = await template([`image.digest=${digest}`, 'image.repository=registry.example.com/tote']);
      const workloads = objects.filter((o) => o.kind === 'Deployment' || o.kind === 'DaemonSet');
      assert.equal(workloads.length, 2);
      for (const o of workloads) assert.equal(imageOf(o), `registry.example.com/tote@${digest}`);
    });
  });

  describe('the same objects as config/', () => {
    it('with default values: config/default, less the Namespace (helm install --create-namespace, or yours)', async () => {
      const kustomized = (await kustomize('default')).filter((o) => o.kind !== 'Namespace');
      assertSameObjects(await template(), kustomized);
    });

    it('its CRDs are those of crds/, kept on uninstall; crds.install=false leaves them out', async () => {
      const crds = (await template()).filter((o) => o.kind === 'CustomResourceDefinition');
      assert.equal(crds.length, 2);
      for (const crd of crds) {
        const file = join(
          repoRoot,
          'crds',
          `${crd.spec && (crd.spec as { group: string }).group}_${crd.metadata.name.split('.')[0]}.yaml`,
        );
        assert.deepEqual(normalised(crd), normalised(parse(readFileSync(file, 'utf8')) as K8sObject));
        assert.equal(crd.metadata.annotations?.['helm.sh/resource-policy'], 'keep');
      }
      const without = await template(['crds.install=false']);
      assert.ok(!without.some((o) => o.kind === 'CustomResourceDefinition'));
    });

    it('with the monitoring switches: config/prometheus and config/grafana', async () => {
      const objects = await template([
        'serviceMonitor.enabled=true',
        'prometheusRule.enabled=true',
        'dashboard.enabled=true',
      ]);
      const monitoring = objects.filter(
        (o) => ['ServiceMonitor', 'PrometheusRule'].includes(o.kind) || o.kind === 'ConfigMap',
      );
      assertSameObjects(monitoring, [...(await kustomize('prometheus')), ...(await kustomize('grafana'))]);
    });

    it('switches off the NetworkPolicies, the PDB, the PriorityClass, the lease policy and the user roles', async () => {
      const objects = await template([
        'networkPolicy.enabled=false',
        'controller.podDisruptionBudget.enabled=false',
        'priorityClass.create=false',
        'agentLeasePolicy.enabled=false',
        'userRoles.enabled=false',
      ]);
      const kinds = new Set(objects.map((o) => o.kind));
      for (const gone of ['NetworkPolicy', 'PodDisruptionBudget', 'PriorityClass', 'ValidatingAdmissionPolicy'])
        assert.ok(!kinds.has(gone), `${gone} switched off`);
      assert.deepEqual(
        objects.filter((o) => o.kind === 'ClusterRole').map((o) => o.metadata.name),
        ['tote-controller', 'tote-agent-certificate'],
        "only the components' own roles are left",
      );
    });

    it('without contentDir the agent mounts only the socket and passes --content-dir= (the content API)', async () => {
      const [agent] = (await template(['agent.contentDir='])).filter((o) => o.kind === 'DaemonSet');
      const spec = (
        agent as unknown as {
          spec: {
            template: { spec: { volumes: { hostPath?: { path: string } }[]; containers: { args: string[] }[] } };
          };
        }
      ).spec.template.spec;
      assert.deepEqual(
        spec.volumes.filter((v) => v.hostPath).map((v) => v.hostPath!.path),
        ['/run/containerd/containerd.sock'],
      );
      assert.ok(spec.containers[0]!.args.includes('--content-dir='));
    });

    it('another release name prefixes every cluster-scoped name and the selectors carry the release', async () => {
      const objects = await template([], 'tote-blue', 'tote-blue');
      for (const o of objects.filter((x) =>
        ['ClusterRole', 'ClusterRoleBinding', 'ValidatingAdmissionPolicy'].includes(x.kind),
      ))
        assert.match(o.metadata.name, /^tote-blue-/, keyOf(o));
      const [deployment] = objects.filter((o) => o.kind === 'Deployment');
      const selector = (deployment as unknown as { spec: { selector: { matchLabels: Record<string, string> } } }).spec
        .selector.matchLabels;
      assert.deepEqual(selector, {
        'app.kubernetes.io/name': 'tote-blue-controller',
        'app.kubernetes.io/instance': 'tote-blue',
      });
    });
  });

  describe('on the API server', () => {
    it('accepts everything the chart renders in a server-side dry run (prometheus-operator kinds aside)', async () => {
      const ns = await kubectl(cluster, ['apply', '-f', '-'], {
        input: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: systemNamespace } }),
      });
      assert.equal(ns.code, 0, ns.stderr);
      const objects = (
        await template(['dashboard.enabled=true', ...policyValues('helm-dry-run', 'DetectOnly')])
      ).filter((o) => !o.apiVersion.startsWith('monitoring.coreos.com/'));
      const result = await kubectl(cluster, ['apply', '--dry-run=server', '-f', '-'], {
        input: objects.map((o) => JSON.stringify(o)).join('\n'),
      });
      assert.equal(result.code, 0, result.stderr);
      for (const o of objects)
        assert.ok(result.stdout.includes(`/${o.metadata.name} `), `${keyOf(o)} went through the dry run`);
    });

    it('a policy from values with a bad spec is refused by the API server, naming the field', async () => {
      const objects = (await template(policyValues('helm-bad', 'Sometimes'))).filter((o) => o.kind === 'SalvagePolicy');
      const result = await kubectl(cluster, ['apply', '--dry-run=server', '-f', '-'], {
        input: JSON.stringify(objects[0]),
      });
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /spec\.mode/);
    });
  });

  describe('install, upgrade, uninstall', () => {
    // The shared cluster's CRDs belong to the test suite (test/support applies crds/), so this release leaves them
    // out; the CRD templates are checked above against crds/ and by the dry run.
    const release = `tote-h${randomBytes(3).toString('hex')}`;
    let ns: TestNamespace;
    const releaseSets = () => [
      'crds.install=false',
      `priorityClass.name=${release}-critical`,
      ...policyValues(`${release}-minimal`, 'DetectOnly'),
    ];
    const get = (args: string[]) => kubectl(cluster, ['get', ...args, '-o', 'json']);

    before(async () => {
      ns = await testNamespace(cluster, { name: 'helm' });
    });
    after(async () => {
      await helm(['uninstall', release, `--namespace=${ns.name}`, '--ignore-not-found'], cluster);
      await ns.delete();
    });

    it('helm install creates the workloads, the cluster-wide roles and the policy from values', async () => {
      const sets = releaseSets().flatMap((s) => ['--set', s]);
      const result = await helm(['install', release, chartDir, `--namespace=${ns.name}`, ...sets], cluster);
      assert.equal(result.code, 0, result.stderr);
      const deployment = await get(['deployment', `${release}-controller`, `--namespace=${ns.name}`]);
      assert.equal(deployment.code, 0, deployment.stderr);
      assert.equal(JSON.parse(deployment.stdout).spec.replicas, 2);
      for (const args of [
        ['daemonset', `${release}-agent`, `--namespace=${ns.name}`],
        ['clusterrole', `${release}-controller`],
        ['validatingadmissionpolicy', `${release}-agent-own-lease`],
        ['priorityclass', `${release}-critical`],
      ])
        assert.equal((await get(args)).code, 0, args.join(' '));
      const policy = await get(['salvagepolicy', `${release}-minimal`]);
      assert.equal(policy.code, 0, policy.stderr);
      assert.equal(JSON.parse(policy.stdout).spec.mode, 'DetectOnly');
    });

    it('helm upgrade changes what the values changed', async () => {
      const sets = [...releaseSets(), 'controller.replicas=1', `policies[0].spec.mode=Salvage`].flatMap((s) => [
        '--set',
        s,
      ]);
      const result = await helm(['upgrade', release, chartDir, `--namespace=${ns.name}`, ...sets], cluster);
      assert.equal(result.code, 0, result.stderr);
      const deployment = await get(['deployment', `${release}-controller`, `--namespace=${ns.name}`]);
      assert.equal(JSON.parse(deployment.stdout).spec.replicas, 1);
      const policy = await get(['salvagepolicy', `${release}-minimal`]);
      assert.equal(JSON.parse(policy.stdout).spec.mode, 'Salvage');
      const history = await helm(['history', release, `--namespace=${ns.name}`, '-o', 'json'], cluster);
      assert.equal((JSON.parse(history.stdout) as unknown[]).length, 2);
    });

    it('helm uninstall removes the release, cluster-wide objects included', async () => {
      const result = await helm(['uninstall', release, `--namespace=${ns.name}`, '--wait'], cluster);
      assert.equal(result.code, 0, result.stderr);
      for (const args of [
        ['deployment', `${release}-controller`, `--namespace=${ns.name}`],
        ['clusterrole', `${release}-controller`],
        ['validatingadmissionpolicy', `${release}-agent-own-lease`],
        ['salvagepolicy', `${release}-minimal`],
      ]) {
        const left = await get(args);
        assert.notEqual(left.code, 0, `${args.join(' ')} is gone`);
        assert.match(left.stderr, /NotFound/);
      }
    });
  });
});
