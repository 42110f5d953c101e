// The main story, end to end on the local cluster with real agents, real containerd and the controller running under
// its shipped RBAC: an image survives only on node-a after its registry lost it; a Deployment's pod on node-b is stuck
// in ErrImagePull; tote copies the image, the pod is recreated and runs, and the record tells the story. And what the
// story costs the API server (issue 21, "writes per incident"), counted by the API server itself (a FlowSchema for the
// controller in the test's namespace): five requests, the record's creation, the status writes a user follows the
// story by (the transfer started from the source chosen; the end), one Event, the pod's deletion.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ensureCluster, kubectl, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import { ensureTote } from '../support/tote.ts';
import { countControllerRequests } from '../support/api-requests.ts';
import {
  deployment,
  lostImage,
  namespaceEvents,
  scopedPolicy,
  waitForEvent,
  waitForRecords,
  waitForRunningPods,
} from '../support/salvage.ts';
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

    // One Event for the rescue, on the record (issue 21): what moved, the pod restarted, the image technical debt.
    const salvaged = await waitForEvent(env, ns.name, (e) => e.reason === 'Salvaged', 'the Salvaged Event');
    assert.equal(salvaged.regarding?.kind, 'SalvageRecord');
    assert.equal(salvaged.type, 'Warning');
    assert.match(salvaged.note ?? '', /from node-a to node-b: .*; deleting app-.* so .*technical debt/);

    const table = await kubectl(env, ['get', 'salvagerecords', '-n', ns.name]);
    assert.match(table.stdout, /Completed\s+node-a\s+node-b/);
    const describe = await kubectl(env, ['describe', 'salvagerecord', '-n', ns.name, record.metadata?.name ?? '']);
    assert.match(describe.stdout, /History/);
    assert.match(describe.stdout, /Salvaged/);
  });

  it('costs the API server at most five requests: create, two status writes, one Event, the deletion', async (t) => {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, {}, t);
    const requests = await countControllerRequests(env, ns.name, t);
    const image = await lostImage(
      env,
      { repository: `writes/${ns.name}`, tag: 'v1', layers: 2, layerSize: 128 * 1024 },
      ['node-a'],
    );

    await deployment(env, ns.name, 'app', image.reference(env.sourceRegistry), ['node-b']);

    const [record] = await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Completed');
    assert.ok(record);
    await waitForRunningPods(env, ns.name, 'app', 1);
    await waitForEvent(env, ns.name, (e) => e.reportingController === 'tote.dev/controller', 'an Event from tote');

    const count = await requests.count();
    const events = (await namespaceEvents(env, ns.name)).filter((e) => e.kind === 'SalvageRecord' || e.kind === 'Pod');
    const story = (record.status?.history ?? []).map((h) => `${h.phase}/${h.reason}`).join(' → ');
    assert.ok(
      count <= 5,
      `${count} requests for one incident (create + status writes + Events + pod deletion); history: ${story}; events: ${JSON.stringify(events)}`,
    );
  });
});
