// The local test cluster tests itself: pods follow from what each node's real containerd holds, the real
// controller-manager and scheduler work, kubectl works, and the image factory's registry and node operations are real.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import type { V1Node, V1Pod } from '@kubernetes/client-node';
import {
  buildImage,
  buildLayer,
  deleteBlobsFromNode,
  deleteImageFromRegistry,
  ensureCluster,
  isPodReady,
  kubeConfig,
  kubectl,
  nodeHasImage,
  podsPath,
  pullToNode,
  pushImage,
  registries,
  registryDigest,
  registryHasBlob,
  testNamespace,
  waitForAny,
  waitForObject,
  waitForPod,
  waitForPodReady,
  waitForPodWaiting,
  waitingReason,
} from '../../support/index.ts';
import type { ClusterEnv, TestImage } from '../../support/index.ts';

let env: ClusterEnv;
let core: CoreV1Api;
let apps: AppsV1Api;

before(async () => {
  env = await ensureCluster();
  core = kubeConfig(env).makeApiClient(CoreV1Api);
  apps = kubeConfig(env).makeApiClient(AppsV1Api);
});

const socket = (node: string) => {
  const s = env.nodeSockets.get(node);
  assert.ok(s, `no socket for ${node}`);
  return s;
};

function podOn(name: string, node: string, image: string, extra: Partial<NonNullable<V1Pod['spec']>> = {}): V1Pod {
  return {
    metadata: { name },
    spec: {
      nodeSelector: { 'kubernetes.io/hostname': node },
      containers: [{ name: 'main', image, imagePullPolicy: 'IfNotPresent' }],
      ...extra,
    },
  };
}

/** A unique image per test run, so reruns against a reused cluster start from a clean slate. */
const unique = (repository: string, extra: Parameters<typeof buildImage>[0] = { repository }) =>
  buildImage({ ...extra, repository, tag: `t${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}` });

describe('local cluster', () => {
  test('a pod whose image is on its node runs, even after the registry lost it', async (t) => {
    const ns = await testNamespace(env, t);
    const { source } = registries(env);
    const image = unique('harness/present', { repository: 'harness/present', layers: 2, layerSize: 64 * 1024 });
    await pushImage(source, image);
    const ref = image.reference(env.sourceRegistry);
    await pullToNode(socket('node-a'), ref);
    await deleteImageFromRegistry(source, image, env.sourceRegistryConfig);
    assert.equal(await registryDigest(source, image.repository, image.tag), undefined);

    await core.createNamespacedPod({ namespace: ns.name, body: podOn('present', 'node-a', ref) });
    const pod = await waitForPodReady(env, ns.name, 'present');
    assert.equal(pod.spec?.nodeName, 'node-a');
    const status = pod.status?.containerStatuses?.[0];
    assert.equal(status?.imageID, image.digestReference(env.sourceRegistry));
    assert.match(status?.containerID ?? '', /^containerd:\/\/[0-9a-f]{64}$/);

    // Node.status.images lists it like the kubelet does (repo digest first).
    const node = await waitForObject<V1Node>(
      env,
      '/api/v1/nodes',
      'node-a',
      (n: V1Node | undefined) =>
        !!n?.status?.images?.some((i) => i.names?.includes(image.digestReference(env.sourceRegistry))),
      { what: 'node-a to list the image' },
    );
    assert.ok(node);
  });

  test('a pod whose image exists nowhere goes ErrImagePull then ImagePullBackOff', async (t) => {
    const ns = await testNamespace(env, t);
    const ref = `${env.sourceRegistry}/harness/never-pushed:${Date.now()}`;
    await core.createNamespacedPod({ namespace: ns.name, body: podOn('absent', 'node-b', ref) });
    const pulling = await waitForPodWaiting(env, ns.name, 'absent', ['ErrImagePull', 'ImagePullBackOff']);
    assert.match(pulling.status?.containerStatuses?.[0]?.state?.waiting?.message ?? '', /not found/);
    const backoff = await waitForPodWaiting(env, ns.name, 'absent', ['ImagePullBackOff']);
    assert.equal(backoff.status?.phase, 'Pending');
    assert.match(
      backoff.status?.containerStatuses?.[0]?.state?.waiting?.message ?? '',
      new RegExp(
        `^Back-off pulling image "${ref.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}": ErrImagePull: rpc error: code = NotFound`,
      ),
    );
    assert.equal(await nodeHasImage(socket('node-b'), ref), false);
  });

  test('a pod whose image is only in the registry is pulled through CRI and runs', async (t) => {
    const ns = await testNamespace(env, t);
    const { source } = registries(env);
    const image = unique('harness/pulled', {
      repository: 'harness/pulled',
      format: 'docker',
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
      ],
    });
    await pushImage(source, image);
    const ref = image.reference(env.sourceRegistry);
    await core.createNamespacedPod({ namespace: ns.name, body: podOn('pulled', 'node-c', ref) });
    const pod = await waitForPodReady(env, ns.name, 'pulled');
    assert.equal(pod.status?.containerStatuses?.[0]?.imageID, image.digestReference(env.sourceRegistry));
    assert.equal(await nodeHasImage(socket('node-c'), ref), true);
  });

  test("an image record whose layer blob is gone gives CreateContainerError with containerd's message", async (t) => {
    const ns = await testNamespace(env, t);
    const { source } = registries(env);
    const base = [buildLayer({ size: 8192, seed: 'harness-shared-base' })];
    const image = unique('harness/broken', { repository: 'harness/broken', base, layers: 1 });
    await pushImage(source, image);
    const ref = image.reference(env.sourceRegistry);
    await pullToNode(socket('node-a'), ref);
    const lost = image.platforms[0]!.layers[1]!;
    await deleteBlobsFromNode(socket('node-a'), [lost.digest]);
    assert.equal(await nodeHasImage(socket('node-a'), ref), true, 'the image record stays');

    await core.createNamespacedPod({ namespace: ns.name, body: podOn('broken', 'node-a', ref) });
    const pod = await waitForPodWaiting(env, ns.name, 'broken', ['CreateContainerError']);
    assert.equal(
      pod.status?.containerStatuses?.[0]?.state?.waiting?.message,
      `failed to create containerd container: error unpacking image: failed to extract layer ${lost.diffID}: ` +
        `failed to get reader from content store: content digest ${lost.digest}: not found`,
    );
  });

  test('init containers run first; a failing init image holds the pod in PodInitializing', async (t) => {
    const ns = await testNamespace(env, t);
    const { source } = registries(env);
    const image = unique('harness/init');
    await pushImage(source, image);
    const ref = image.reference(env.sourceRegistry);
    const missing = `${env.sourceRegistry}/harness/missing-init:${Date.now()}`;
    await core.createNamespacedPod({
      namespace: ns.name,
      body: podOn('init-ok', 'node-b', ref, { initContainers: [{ name: 'init', image: ref }] }),
    });
    await core.createNamespacedPod({
      namespace: ns.name,
      body: podOn('init-bad', 'node-b', ref, { initContainers: [{ name: 'init', image: missing }] }),
    });
    const ok = await waitForPodReady(env, ns.name, 'init-ok');
    assert.equal(ok.status?.initContainerStatuses?.[0]?.state?.terminated?.reason, 'Completed');
    const bad = await waitForPod(env, ns.name, 'init-bad', (p) =>
      ['ErrImagePull', 'ImagePullBackOff'].includes(waitingReason(p, 'init') ?? ''),
    );
    assert.equal(waitingReason(bad, 'main'), 'PodInitializing');
  });

  test("a Deployment's deleted pod is recreated by the real controller-manager", async (t) => {
    const ns = await testNamespace(env, t);
    const { source } = registries(env);
    const image = unique('harness/deploy');
    await pushImage(source, image);
    const labels = { app: 'web' };
    await apps.createNamespacedDeployment({
      namespace: ns.name,
      body: {
        metadata: { name: 'web' },
        spec: {
          replicas: 1,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: { containers: [{ name: 'web', image: image.reference(env.sourceRegistry) }] },
          },
        },
      },
    });
    const first = await waitForAny<V1Pod>(env, podsPath(ns.name), isPodReady, { what: 'a Ready pod of web' });
    await core.deleteNamespacedPod({ name: first.metadata!.name!, namespace: ns.name });
    const second = await waitForAny<V1Pod>(
      env,
      podsPath(ns.name),
      (p) => p.metadata?.uid !== first.metadata?.uid && isPodReady(p),
      { what: 'a replacement pod of web' },
    );
    assert.notEqual(second.metadata?.name, first.metadata?.name);
    assert.equal(second.metadata?.ownerReferences?.[0]?.kind, 'ReplicaSet');
  });

  test('kubectl get and describe work against the cluster', async (t) => {
    const ns = await testNamespace(env, t);
    const nodes = await kubectl(env, ['get', 'nodes', '-o', 'name']);
    assert.equal(nodes.code, 0, nodes.stderr);
    assert.deepEqual(nodes.stdout.trim().split('\n').sort(), env.nodes.map((n) => `node/${n}`).sort());
    const ref = `${env.sourceRegistry}/harness/described:${Date.now()}`;
    await core.createNamespacedPod({ namespace: ns.name, body: podOn('described', 'node-c', ref) });
    await waitForPodWaiting(env, ns.name, 'described', ['ErrImagePull', 'ImagePullBackOff']);
    const describe = await kubectl(env, ['describe', 'pod', 'described', '-n', ns.name]);
    assert.equal(describe.code, 0, describe.stderr);
    assert.match(describe.stdout, /Node:\s+node-c/);
    assert.match(describe.stdout, /Failed to pull image/);
    const crds = await kubectl(env, ['get', 'crd', '-o', 'name']);
    assert.equal(crds.code, 0, crds.stderr);
  });

  test('deleting an image from the registry with garbage-collect removes its blobs', async () => {
    const { source } = registries(env);
    const image: TestImage = unique('harness/gc', { repository: 'harness/gc', layers: 2 });
    await pushImage(source, image);
    const layer = image.platforms[0]!.layers[0]!.digest;
    assert.equal(await registryHasBlob(source, image.repository, layer), true);
    await deleteImageFromRegistry(source, image, env.sourceRegistryConfig);
    assert.equal(await registryHasBlob(source, image.repository, layer), false);
  });

  test('the backup registry wants TLS from the test CA and basic auth', async () => {
    const { backup } = registries(env);
    const image = unique('harness/backup');
    await pushImage(backup, image);
    assert.equal(await registryDigest(backup, image.repository, image.tag), image.target.digest);
    await assert.rejects(
      registryDigest({ ...backup, auth: { username: 'tote', password: 'wrong' } }, image.repository, image.tag),
      /HTTP 401/,
    );
  });
});
