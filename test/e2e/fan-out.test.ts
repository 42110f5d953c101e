// Fan-out: a Deployment spread over three nodes whose image survives on one of them gets one record per node that
// needs it, and the image spreads as a tree: a node that received it serves the next.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ensureCluster, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import { ensureTote } from '../support/tote.ts';
import {
  deployment,
  listRecords,
  lostImage,
  scopedPolicy,
  waitForRecords,
  waitForRunningPods,
} from '../support/salvage.ts';

let env: ClusterEnv;

describe('fan-out', () => {
  before(async () => {
    env = await ensureCluster();
    await ensureTote(env);
  });

  it('3 replicas on 3 nodes, image on one: two records, both Completed, every pod Running', async (t) => {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, {}, t);
    const image = await lostImage(env, { repository: `fanout/${ns.name}`, layers: 2, layerSize: 128 * 1024 }, [
      'node-a',
    ]);
    await deployment(env, ns.name, 'app', image.reference(env.sourceRegistry), ['node-a', 'node-b', 'node-c'], 3);

    await waitForRecords(env, ns.name, 2, (r) => r.status?.phase === 'Completed');
    const pods = await waitForRunningPods(env, ns.name, 'app', 3);
    assert.deepEqual(pods.map((p) => p.spec?.nodeName).sort(), ['node-a', 'node-b', 'node-c']);

    const records = await listRecords(env, ns.name);
    assert.deepEqual(records.map((r) => r.spec.targetNode).sort(), ['node-b', 'node-c']);
    for (const r of records) {
      assert.equal(r.status?.phase, 'Completed');
      assert.equal(r.status?.digest, image.target.digest);
    }
    // A tree, not a star: node-a serves one transfer of the image at a time (--transfers-per-source=1), so one target
    // is served by node-a and the other by that target once it holds the image.
    const first = records.find((r) => r.status?.sourceNode === 'node-a');
    const second = records.find((r) => r !== first);
    assert.equal(first?.status?.sourceNode, 'node-a');
    assert.equal(second?.status?.sourceNode, first?.spec.targetNode, JSON.stringify(records.map((r) => r.status)));
  });
});
