// How an image reached the source node and how a pod names it vary from cluster to cluster; every combination must end
// with the target holding exactly the image records a CRI pull of the pod's reference would have made there, so the
// kubelet's own lookup (CRI ImageStatus of that reference) finds it and the pod runs.
//
// Source names: `ctr pull` by tag (the tag record only), `ctr pull` by digest (the repo@digest record only), a CRI
// pull by tag (tag, repo@digest and the config id). Pod references: tag, digest, tag@digest. Manifests: OCI, Docker
// schema 2, an OCI index of two platforms. Checked with independent tools: CRI ImageStatus and `ctr images ls` on the
// target, the pods' own status, and a watch counting every pod the workloads ever had.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import type { CoreV1Event } from '@kubernetes/client-node';
import { promisify } from 'node:util';
import { ensureCluster, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv, TestNamespace } from '../support/cluster.ts';
import { ensureTote } from '../support/tote.ts';
import { trackPods } from '../support/chaos.ts';
import { deployment, lostImage, scopedPolicy, waitForRecords, waitForRunningPods } from '../support/salvage.ts';
import {
  buildImage,
  deleteImageFromRegistry,
  pullToNode,
  pushImage,
  registries,
  waitForPodWaiting,
  watchUntil,
} from '../support/index.ts';
import type { ImageSpec, TestImage } from '../support/index.ts';
import { CriClient } from '../support/node-simulator/cri.ts';

const run = promisify(execFile);

type SourceNames = 'tag' | 'digest' | 'all';
type PodReference = 'tag' | 'digest' | 'tag@digest';
type Manifest = 'oci' | 'docker' | 'index';

interface Case {
  source: SourceNames;
  pod: PodReference;
  manifest: Manifest;
  app: string;
  image: TestImage;
  ref: string;
}

const sourceNode = 'node-a';
const targetNodes = ['node-b', 'node-c'];

const manifestSpec = (manifest: Manifest): Partial<ImageSpec> =>
  manifest === 'docker'
    ? { format: 'docker' }
    : manifest === 'index'
      ? {
          platforms: [
            { os: 'linux', architecture: 'amd64' },
            { os: 'linux', architecture: 'arm64' },
          ],
        }
      : {};

/** `ctr images pull`: containerd's own client records only the name it was given (no CRI names, no id record). */
async function ctrPull(socket: string, ref: string): Promise<void> {
  await run('ctr', ['--address', socket, '-n', 'k8s.io', 'images', 'pull', '--plain-http', ref], {
    timeout: 120_000,
  });
}

/** Every image record name on a node, from containerd's own client. */
async function ctrNames(socket: string): Promise<string[]> {
  const { stdout } = await run('ctr', ['--address', socket, '-n', 'k8s.io', 'images', 'ls', '-q']);
  return stdout.split('\n').filter((l) => l.length > 0);
}

function podReference(env: ClusterEnv, image: TestImage, form: PodReference): string {
  const repo = `${env.sourceRegistry}/${image.repository}`;
  if (form === 'tag') return `${repo}:${image.tag}`;
  if (form === 'digest') return `${repo}@${image.target.digest}`;
  return `${repo}:${image.tag}@${image.target.digest}`;
}

/** The records a CRI pull of `form` makes: repo@digest and the config id, plus the tag for a tag reference. */
function criPullNames(env: ClusterEnv, image: TestImage, form: PodReference, configDigest: string): string[] {
  const repo = `${env.sourceRegistry}/${image.repository}`;
  const names = [`${repo}@${image.target.digest}`, configDigest];
  if (form === 'tag') names.push(`${repo}:${image.tag}`);
  return names.sort();
}

/** The config of the platform the nodes run (linux/amd64): what CRI reports as the image id. */
const hostConfig = (image: TestImage): string =>
  image.platforms.find((p) => p.platform.architecture === 'amd64')?.config.digest ?? '';

/** Puts the image on the source node under the names `source` says, from the registry that still has it. */
async function placeOnSource(env: ClusterEnv, image: TestImage, source: SourceNames): Promise<void> {
  const socket = env.nodeSockets.get(sourceNode) ?? '';
  if (source === 'tag') await ctrPull(socket, image.reference(env.sourceRegistry));
  else if (source === 'digest') await ctrPull(socket, image.digestReference(env.sourceRegistry));
  else await pullToNode(socket, image.reference(env.sourceRegistry));
}

describe('reference forms: every way a source holds an image and a pod names it', () => {
  let env: ClusterEnv;
  let ns: TestNamespace;
  let pods: Awaited<ReturnType<typeof trackPods>>;
  const cases: Case[] = [];

  before(async () => {
    env = await ensureCluster();
    await ensureTote(env);
  });
  after(() => pods?.stop());

  it('ends with the records a CRI pull would make, the pod running, and each workload restarted at most once', async (t) => {
    ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, {}, t);
    pods = await trackPods(env, ns.name);
    const source = registries(env).source;
    let n = 0;
    for (const manifest of ['oci', 'docker', 'index'] as const)
      for (const sourceNames of ['tag', 'digest', 'all'] as const)
        for (const pod of ['tag', 'digest', 'tag@digest'] as const) {
          const app = `c${n++}`;
          const image = buildImage({
            repository: `refs/${ns.name}/${manifest}-${sourceNames}-${pod === 'tag@digest' ? 'both' : pod}`,
            tag: 'v1',
            seed: `${ns.name}/${app}`,
            layers: 1,
            layerSize: 32 * 1024,
            ...manifestSpec(manifest),
          });
          await pushImage(source, image);
          await placeOnSource(env, image, sourceNames);
          cases.push({ source: sourceNames, pod, manifest, app, image, ref: podReference(env, image, pod) });
        }
    // Lost: the registry no longer serves any of them.
    for (const c of cases) await deleteImageFromRegistry(source, c.image);
    for (const [i, c] of cases.entries()) {
      await deployment(env, ns.name, c.app, c.ref, [targetNodes[i % targetNodes.length] ?? '']);
    }

    // A tag the registry lost that no node holds under that tag cannot be resolved: nothing to do, nothing deleted.
    const unresolvable = cases.filter((c) => c.source === 'digest' && c.pod === 'tag');
    const salvageable = cases.filter((c) => !unresolvable.includes(c));
    const records = await waitForRecords(
      env,
      ns.name,
      cases.length,
      (r) => r.status?.phase === 'Completed' || r.status?.phase === 'NotActionable',
      { timeoutMs: 300_000 },
    );
    for (const c of unresolvable) {
      const record = records.find((r) => r.spec.imageRef === c.ref);
      assert.equal(record?.status?.phase, 'NotActionable', `${c.app} (${c.manifest}, ${c.source}, ${c.pod})`);
    }

    for (const [i, c] of salvageable.entries()) {
      const what = `${c.app}: ${c.manifest} image, source holds ${c.source}, pod names it by ${c.pod}`;
      const record = records.find((r) => r.spec.imageRef === c.ref);
      assert.equal(record?.status?.phase, 'Completed', `${what}: ${record?.status?.message}`);
      const [pod] = await waitForRunningPods(env, ns.name, c.app, 1, { timeoutMs: 120_000 });
      const target = pod?.spec?.nodeName ?? '';
      const socket = env.nodeSockets.get(target) ?? '';
      const cri = new CriClient(socket);
      try {
        const status = await cri.imageStatus(c.ref);
        assert.equal(status?.id, hostConfig(c.image), `${what}: CRI ImageStatus of ${c.ref} on ${target}`);
      } finally {
        cri.close();
      }
      const repo = `${env.sourceRegistry}/${c.image.repository}`;
      const held = (await ctrNames(socket)).filter(
        (name) => name.startsWith(`${repo}:`) || name.startsWith(`${repo}@`) || name === hostConfig(c.image),
      );
      assert.deepEqual(held.sort(), criPullNames(env, c.image, c.pod, hostConfig(c.image)), `${what} (${i})`);
    }

    // Each Deployment's first pod was deleted at most once: at most two pods per workload ever existed, and a pod tote
    // could not help was never deleted.
    const perApp = new Map<string, string[]>();
    for (const [uid, name] of pods.names) {
      const app = name.split('-')[0] ?? '';
      perApp.set(app, [...(perApp.get(app) ?? []), uid]);
    }
    for (const c of cases) {
      const limit = unresolvable.includes(c) ? 1 : 2;
      const seen = perApp.get(c.app) ?? [];
      assert.ok(seen.length >= 1 && seen.length <= limit, `${c.app} had ${seen.length} pods (at most ${limit})`);
    }
    for (const c of unresolvable) {
      const [uid] = perApp.get(c.app) ?? [];
      assert.ok(uid && !pods.deleted.has(uid), `${c.app}'s pod was deleted though no copy could help it`);
      await waitForPodWaiting(env, ns.name, pods.names.get(uid) ?? '', ['ErrImagePull', 'ImagePullBackOff']);
    }
  });

  it('never deletes a pod that cannot start from the copy (imagePullPolicy: Always), and says so', async (t) => {
    const always = await testNamespace(env, t);
    await scopedPolicy(env, always, {}, t);
    const watched = await trackPods(env, always.name);
    t.after(() => watched.stop());
    const image = await lostImage(env, { repository: `always/${always.name}`, tag: 'v1', layers: 1 }, [sourceNode]);
    await deployment(env, always.name, 'app', image.reference(env.sourceRegistry), ['node-b'], 1, 'Always');

    const [record] = await waitForRecords(env, always.name, 1, (r) =>
      (r.status?.conditions ?? []).some(
        (c) => c.type === 'PodsStarted' && c.status === 'False' && c.reason === 'PullPolicyAlways',
      ),
    );
    assert.equal(record?.status?.phase, 'Completed', record?.status?.message);
    assert.deepEqual(record?.status?.restartedPods, []);
    assert.match(record?.status?.message ?? '', /imagePullPolicy: Always/);
    // The kubelet retries the pull twice more while tote watches the Completed record: no deletion in between.
    const [uid] = [...watched.names.keys()];
    assert.ok(uid);
    await watchUntil<CoreV1Event, true>(
      env,
      `/api/v1/namespaces/${always.name}/events`,
      { fieldSelector: `involvedObject.uid=${uid}` },
      (events) =>
        [...events.values()].filter((e) => e.reason === 'Failed' && /^Failed to pull image/.test(e.message ?? ''))
          .length >= 3
          ? true
          : undefined,
      { timeoutMs: 120_000, what: 'three failed pulls of the pod' },
    );
    assert.deepEqual([...watched.names.keys()], [uid], 'one pod only: never deleted, never replaced');
    assert.equal(watched.deleted.size, 0);
  });

  it('a node holding the image under its id only gets the names the pod needs, from its own store', async (t) => {
    const own = await testNamespace(env, t);
    await scopedPolicy(env, own, {}, t);
    const source = registries(env).source;
    const image = buildImage({ repository: `id-only/${own.name}`, tag: 'v1', layers: 1, seed: own.name });
    await pushImage(source, image);
    const socket = env.nodeSockets.get('node-b') ?? '';
    await pullToNode(socket, image.reference(env.sourceRegistry));
    // What an import by an older tote left: the content and the id record, no name the kubelet looks up.
    await run('ctr', [
      '--address',
      socket,
      '-n',
      'k8s.io',
      'images',
      'rm',
      image.reference(env.sourceRegistry),
      image.digestReference(env.sourceRegistry),
    ]);
    await deleteImageFromRegistry(source, image);
    const ref = image.digestReference(env.sourceRegistry);
    assert.equal(await new CriClient(socket).imageStatus(ref), undefined, 'CRI does not find it by digest');

    await deployment(env, own.name, 'app', ref, ['node-b']);
    const [record] = await waitForRecords(env, own.name, 1, (r) => r.status?.phase === 'Completed');
    assert.equal(record?.status?.sourceNode, 'node-b', record?.status?.message);
    await waitForRunningPods(env, own.name, 'app', 1);
    const cri = new CriClient(socket);
    try {
      assert.equal((await cri.imageStatus(ref))?.id, hostConfig(image));
    } finally {
      cri.close();
    }
  });
});
