// tote installed as a user installs it, on real kubelets (issue 20): the image loaded into every node's containerd,
// hack/certs/make-certs.sh, `kubectl apply -k config/default` exactly as shipped, then the Helm chart in its place
// (test/support/tote-manifests.ts). The controller Deployment and the agent DaemonSet run as pods under the kubelets:
// their probes, the in-cluster API address through kube-proxy, each agent's hostPaths on its own node's containerd
// (1.6 on node-a, 2.x on the others), certificates through CSRs, transfers between pods on different nodes. In a cluster of its own
// (<TOTE_REAL_CLUSTER_DIR>-install), since the other real-kubelet stories run tote as host processes; taken down at the
// end. Every check uses a tool independent of tote: kubectl, the node's own ctr, the registry's API.
import { after, before, describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { V1CertificateSigningRequest, V1Lease, V1Pod } from '@kubernetes/client-node';
import { kubectl, repoRoot, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import { registries, registryDigest } from '../support/images.ts';
import {
  nodeImageDigests,
  realClusterDir,
  runningImage,
  useRealCluster,
  waitForLogLine,
} from '../support/real-cluster.ts';
import { deployment, lostImage, scopedPolicy, waitForRecords, waitForRunningPods } from '../support/salvage.ts';
import { toteNamespace } from '../support/tote.ts';
import { installToteChart, installToteManifests } from '../support/tote-manifests.ts';
import { waitForObject } from '../support/wait.ts';
import type { ManifestInstall } from '../support/tote-manifests.ts';

const run = promisify(execFile);
const dir = `${realClusterDir}-install`;
let env: ClusterEnv;

async function getJson<T>(args: string[]): Promise<T> {
  const r = await kubectl(env, [...args, '-o', 'json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as T;
}

/**
 * What an install must show before any story: every tote pod on the pod network running the loaded image, probes
 * Ready; the leader Lease held by a controller pod (the API server reached at 10.0.0.1:443); for each node a
 * certificate issued through a CSR for that node's current agent pod; each agent announcing its pod IP.
 */
async function assertRunsAsShipped(install: ManifestInstall): Promise<void> {
  const octet = /^https:\/\/10\.(\d+)\.0\.1:/.exec(
    (await kubectl(env, ['config', 'view', '--minify', '-o', 'jsonpath={.clusters[0].cluster.server}'])).stdout,
  )?.[1];
  assert.ok(octet, 'the API server listens on the real-node bridge');
  const podNetwork = new RegExp(`^10\\.${octet}\\.([1-9]\\d*)\\.\\d+$`);
  for (const pod of [...install.controllers, ...install.agents]) {
    const name = pod.metadata?.name;
    assert.equal(pod.spec?.containers[0]?.image, install.image, `${name} runs the loaded image`);
    assert.equal(pod.spec?.hostNetwork ?? false, false, `${name} is not on the host network`);
    assert.match(pod.status?.podIP ?? '', podNetwork, `${name} has a pod IP of its node's pod network`);
  }
  assert.deepEqual(install.agents.map((p) => p.spec?.nodeName).sort(), [...env.nodes].sort());

  // The leader-election Lease comes to one of these controller pods (a leader of an earlier install may hold it until
  // it expires): they reach the API server at 10.0.0.1:443.
  const controllerNames = install.controllers.map((p) => p.metadata?.name ?? '');
  await waitForObject<V1Lease>(
    env,
    `/apis/coordination.k8s.io/v1/namespaces/${toteNamespace}/leases`,
    'tote-controller-leader',
    (lease) => controllerNames.some((name) => lease?.spec?.holderIdentity?.startsWith(`${name}_`)),
    { timeoutMs: 60_000, what: `the leader Lease held by one of ${controllerNames.join(', ')}` },
  );

  // Each agent asked for its certificate with its pod's token, and the controller (signer tote.dev/agent) issued it
  // for that node only.
  const csrs = await getJson<{ items: V1CertificateSigningRequest[] }>(['get', 'csr']);
  for (const agent of install.agents) {
    const node = agent.spec?.nodeName ?? '';
    const started = new Date(agent.metadata?.creationTimestamp ?? 0).getTime();
    const issued = csrs.items.filter(
      (c) =>
        new Date(c.metadata?.creationTimestamp ?? 0).getTime() >= started &&
        c.spec.signerName === 'tote.dev/agent' &&
        c.spec.username === `system:serviceaccount:${toteNamespace}:tote-agent` &&
        c.status?.conditions?.some((k) => k.type === 'Approved' && k.status === 'True') &&
        c.status.certificate,
    );
    const forNode = issued
      .map((c) => new X509Certificate(Buffer.from(c.status?.certificate ?? '', 'base64')))
      .filter((cert) => cert.subjectAltName?.split(', ').includes(`URI:urn:tote:node:${node}`));
    assert.ok(forNode.length > 0, `a tote.dev/agent certificate issued for ${node} since its agent pod was made`);
    assert.ok(
      forNode.every((cert) => cert.checkIssued(new X509Certificate(install.caCertificate))),
      `${node}'s certificate chains to tote's CA`,
    );
  }

  // Every agent announces its own pod's address, which the controller dials across nodes.
  for (const agent of install.agents) {
    const node = agent.spec?.nodeName ?? '';
    const lease = await getJson<V1Lease>(['get', 'lease', `tote-agent-${node}`, '-n', toteNamespace]);
    assert.equal(lease.metadata?.annotations?.['tote.dev/agent-address'], `${agent.status?.podIP}:9443`);
  }
}

/** The main story: an image held only by node-a (containerd 1.6) runs again on node-b and node-c (2.x). */
async function mainStory(t: TestContext): Promise<void> {
  const ns = await testNamespace(env, t);
  await scopedPolicy(env, ns, {}, t);
  const image = await lostImage(env, runningImage(`e2e/install-${ns.name}`), ['node-a']);
  const ref = image.reference(env.sourceRegistry);
  assert.equal(await registryDigest(registries(env).source, image.repository, image.tag), undefined);
  for (const node of ['node-b', 'node-c'])
    assert.ok(!(await nodeImageDigests(env, node)).has(image.target.digest), `${node} starts without the image`);

  await deployment(env, ns.name, 'app', ref, ['node-b', 'node-c'], 2);
  const records = await waitForRecords(env, ns.name, 2, (r) => r.status?.phase === 'Completed', {
    timeoutMs: 180_000,
  });
  assert.deepEqual(records.map((r) => r.spec.targetNode).sort(), ['node-b', 'node-c']);
  // Only node-a's containerd held the image: the first copy came from there (the second may come from the first
  // target, tote's fan-out tree), so each agent read its own node's socket and content store.
  const sources = records.map((r) => `${r.status?.sourceNode}→${r.spec.targetNode}`);
  assert.ok(
    sources.some((s) => s.startsWith('node-a→')),
    sources.join(', '),
  );
  for (const r of records) assert.notEqual(r.status?.sourceNode, r.spec.targetNode, sources.join(', '));

  const pods = await waitForRunningPods(env, ns.name, 'app', 2, { timeoutMs: 120_000 });
  assert.deepEqual(pods.map((p: V1Pod) => p.spec?.nodeName).sort(), ['node-b', 'node-c']);
  for (const pod of pods) {
    const name = pod.metadata?.name ?? '';
    await waitForLogLine(env, ns.name, name);
    const node = pod.spec?.nodeName ?? '';
    assert.ok((await nodeImageDigests(env, node)).has(image.target.digest), `ctr on ${node} lists the image`);
  }
  assert.equal(
    await registryDigest(registries(env).source, image.repository, image.tag),
    undefined,
    'the image came from node-a, not from the registry',
  );
}

describe('tote installed as a user installs it, as pods on real kubelets', () => {
  before(async () => {
    env = await useRealCluster(dir);
  });
  after(async () => {
    await run(join(repoRoot, 'hack/cluster/down.sh'), [], {
      env: { ...process.env, TOTE_CLUSTER_DIR: dir },
      timeout: 600_000,
    });
  });

  let image: string | undefined;

  it('kubectl apply -k config/default: runs as shipped and rescues the main story', async (t) => {
    const began = Date.now();
    const install = await installToteManifests(env);
    image = install.image;
    t.diagnostic(`image loaded, config/default applied, every pod Ready: ${Date.now() - began} ms`);
    await assertRunsAsShipped(install);
    const story = Date.now();
    await mainStory(t);
    t.diagnostic(`main story: ${Date.now() - story} ms`);
  });

  it('helm install of config/helm/tote in its place: runs as shipped and rescues the main story', async (t) => {
    const began = Date.now();
    const install = await installToteChart(env, { loadedImage: image });
    t.diagnostic(`config/default's objects removed, chart installed, every pod Ready: ${Date.now() - began} ms`);
    const managedBy = await kubectl(env, [
      'get',
      'deployment/tote-controller',
      'daemonset/tote-agent',
      '-n',
      toteNamespace,
      '-o',
      'jsonpath={.items[*].metadata.labels.app\\.kubernetes\\.io/managed-by}',
    ]);
    assert.equal(managedBy.stdout, 'Helm Helm', managedBy.stderr);
    await assertRunsAsShipped(install);
    const story = Date.now();
    await mainStory(t);
    t.diagnostic(`main story: ${Date.now() - story} ms`);
  });
});
