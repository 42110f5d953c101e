// The main story, end to end on the local cluster with real agents, real containerd and the controller running under
// its shipped RBAC: an image survives only on node-a after its registry lost it; a Deployment's pod on node-b is stuck
// in ErrImagePull; tote copies the image, the pod is recreated and runs, and the record tells the story.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ensureCluster, kubectl, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import { ensureTote } from '../support/tote.ts';
import { deployment, lostImage, scopedPolicy, waitForRecords, waitForRunningPods } from '../support/salvage.ts';
import { nodeHasImage } from '../support/images.ts';

let env: ClusterEnv;

describe('salvage: an image lost from its registry, alive on another node', () => {
  before(async () => {
    env = await ensureCluster();
    await ensureTote(env);
  });

  it('copies the image to the node that needs it, restarts the pod, and records the story', async (t) => {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, {}, t);
    const image = await lostImage(
      env,
      { repository: `salvage/${ns.name}`, tag: 'v1', layers: 3, layerSize: 256 * 1024 },
      ['node-a'],
    );
    const ref = image.reference(env.sourceRegistry);

    await deployment(env, ns.name, 'app', ref, ['node-b']);

    const [record] = await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Completed');
    assert.ok(record);
    assert.equal(record.spec.targetNode, 'node-b');
    assert.equal(record.status?.sourceNode, 'node-a');
    assert.equal(record.status?.digest, image.target.digest);
    const phases = (record.status?.history ?? []).map((h) => h.phase);
    for (const phase of ['Resolving', 'Locating', 'Transferring', 'Restarting', 'Completed']) {
      assert.ok(phases.includes(phase as never), `history lacks ${phase}: ${phases.join(' → ')}`);
    }
    assert.ok(
      (record.status?.progress?.transferredBytes ?? 0) >= 3 * 256 * 1024,
      JSON.stringify(record.status?.progress),
    );

    const [pod] = await waitForRunningPods(env, ns.name, 'app', 1);
    assert.equal(pod?.spec?.nodeName, 'node-b');
    assert.ok(await nodeHasImage(env.nodeSockets.get('node-b') ?? '', ref), 'node-b’s containerd holds the image');

    const events = await kubectl(env, [
      'get',
      'events',
      '-n',
      ns.name,
      '-o',
      'jsonpath={range .items[*]}{.reason}{"\\n"}{end}',
    ]);
    for (const reason of ['Salvageable', 'Salvaged', 'PodRestarted'])
      assert.match(events.stdout, new RegExp(reason), events.stdout);

    const table = await kubectl(env, ['get', 'salvagerecords', '-n', ns.name]);
    assert.match(table.stdout, /Completed\s+node-a\s+node-b/);
    const describe = await kubectl(env, ['describe', 'salvagerecord', '-n', ns.name, record.metadata?.name ?? '']);
    assert.match(describe.stdout, /History/);
    assert.match(describe.stdout, /Salvaged/);
  });
});
