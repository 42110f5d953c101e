// Chaos: a tote agent dies (SIGKILL) while an image moves through it. The transfer is slowed by the policy's
// bandwidthPerTransfer so the kill lands mid-stream, observed through the record's progress, never by timing.
//   - source killed: the controller retries from the other holder and the target resumes from its ingests, so the
//     bytes sent twice stay under one chunk per interrupted blob;
//   - target killed: restarted (as a DaemonSet would), it resumes the same transfer from what containerd kept.
// Runs on the chaos cluster (test/support/chaos.ts), never the shared one.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connectContainerd } from '../../src/containerd/index.ts';
import { testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import {
  acquireChaosLock,
  ensureChaosTote,
  entries,
  killTote,
  scrapeCounter,
  trackPods,
  useChaosCluster,
} from '../support/chaos.ts';
import { nodeHasImage } from '../support/images.ts';
import { deployment, lostImage, scopedPolicy, waitForRecords, waitForRunningPods } from '../support/salvage.ts';
import { startAgent } from '../support/tote.ts';
import type { ToteDeployment } from '../support/tote.ts';

const mib = 1024 * 1024;
// One 40 MiB layer moving at 4 MiB/s. Smaller images do not stay in flight: a blob stream buffers up to the 8 MiB
// HTTP/2 window plus grpc-js's 16-message read queue (~24 MiB) in the target, so a 16 MiB image has left the source
// before the first bytes are paced into containerd, and killing the source then changes nothing.
const layers = 1;
const layerSize = 40 * mib;

let env: ClusterEnv;
let tote: ToteDeployment;
let release: () => void = () => undefined;

describe('chaos: an agent killed mid-transfer', () => {
  before(async () => {
    release = await acquireChaosLock();
    env = await useChaosCluster();
    tote = await ensureChaosTote(env);
  });
  after(async () => {
    // Whatever happened, leave every agent running for the next chaos test.
    for (const n of env.nodes) await startAgent(env, tote.paths, n);
    release();
  });

  /** A 40 MiB image on node-a and node-c, a pod needing it on node-b, moving at 4 MiB/s; resolves mid-transfer. */
  async function slowSalvage(t: { name: string; after: (fn: () => Promise<void>) => void }) {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, { limits: { bandwidthPerTransfer: '4Mi' } }, t);
    const image = await lostImage(env, { repository: `chaos/${ns.name}`, tag: 'v1', layers, layerSize }, [
      'node-a',
      'node-c',
    ]);
    const pods = await trackPods(env, ns.name);
    t.after(async () => pods.stop());
    await deployment(env, ns.name, 'app', image.reference(env.sourceRegistry), ['node-b']);
    const [moving] = await waitForRecords(
      env,
      ns.name,
      1,
      (r) => r.status?.phase === 'Transferring' && (r.status.progress?.transferredBytes ?? 0) >= 2 * mib,
      { what: 'a record transferring with at least 2 MiB moved' },
    );
    assert.ok(moving);
    return { ns, image, pods, moving };
  }

  it('source agent killed: the other holder finishes it, re-sending less than a chunk per blob', async (t) => {
    const target = tote.agents.get('node-b')!;
    const receivedBefore = await scrapeCounter(target.metricsUrl, 'tote_agent_bytes_received_total');
    const resumedBefore = await scrapeCounter(target.metricsUrl, 'tote_agent_bytes_resumed_total');
    // Agents live across tests: every counter is read as a difference from before this salvage.
    const sentBefore = new Map<string, number>();
    for (const n of ['node-a', 'node-c'])
      sentBefore.set(n, await scrapeCounter(tote.agents.get(n)!.metricsUrl, 'tote_agent_bytes_sent_total'));
    const { ns, image, pods, moving } = await slowSalvage(t);
    const source = moving.status?.sourceNode ?? '';
    assert.ok(['node-a', 'node-c'].includes(source), `source ${source}`);
    const sourceAgent = tote.agents.get(source)!;
    const sent =
      (await scrapeCounter(sourceAgent.metricsUrl, 'tote_agent_bytes_sent_total')) - (sentBefore.get(source) ?? 0);
    await killTote(sourceAgent);
    const size = [...image.blobs.values()].reduce((sum, b) => sum + b.size, 0);
    t.diagnostic(`source ${source} had sent ${sent} B of ${size} B when killed`);
    assert.ok(sent < size, 'the source was killed before it had sent the whole image');

    const [done] = await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Completed', {
      timeoutMs: 120_000,
    });
    assert.ok(done);
    for (const h of done.status?.history ?? []) t.diagnostic(`${h.phase} ${h.reason}: ${h.message}`);
    const other = source === 'node-a' ? 'node-c' : 'node-a';
    assert.equal(done.status?.sourceNode, other, 'the retry used the other holder');
    assert.equal(entries(done, 'Completed'), 1, 'completed once');
    assert.ok((done.status?.attempts ?? 0) >= 2, `attempts ${done.status?.attempts}`);

    const received = (await scrapeCounter(target.metricsUrl, 'tote_agent_bytes_received_total')) - receivedBefore;
    const resumed = (await scrapeCounter(target.metricsUrl, 'tote_agent_bytes_resumed_total')) - resumedBefore;
    t.diagnostic(`image ${size} B; target received ${received} B in all; resumed ${resumed} B from its ingests`);
    assert.ok(resumed > 0, 'the second attempt resumed from what the first wrote');
    // At most one unacknowledged 1 MiB chunk per layer may have to travel twice.
    assert.ok(received <= size + layers * mib, `received ${received} B for a ${size} B image`);

    const [pod] = await waitForRunningPods(env, ns.name, 'app', 1);
    assert.equal(pod?.spec?.nodeName, 'node-b');
    assert.ok(await nodeHasImage(env.nodeSockets.get('node-b')!, image.reference(env.sourceRegistry)));
    assert.equal(pods.deleted.size, 1, 'one pod deletion (the stuck pod)');
  });

  it('target agent killed: restarted, it resumes the transfer and leaves no lease or ingest behind', async (t) => {
    const { ns, image } = await slowSalvage(t);
    await killTote(tote.agents.get('node-b')!);
    const restarted = await startAgent(env, tote.paths, 'node-b');
    tote.agents.set('node-b', restarted);

    const [done] = await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Completed', {
      timeoutMs: 120_000,
    });
    assert.ok(done);
    assert.equal(entries(done, 'Completed'), 1, 'completed once');
    const resumed = await scrapeCounter(restarted.metricsUrl, 'tote_agent_bytes_resumed_total');
    const received = await scrapeCounter(restarted.metricsUrl, 'tote_agent_bytes_received_total');
    const size = [...image.blobs.values()].reduce((sum, b) => sum + b.size, 0);
    t.diagnostic(`restarted target: resumed ${resumed} B, received ${received} B of ${size} B`);
    assert.ok(resumed > 0, `resumed ${resumed} B`);
    assert.ok(received < size, 'the restarted agent did not start from zero');

    await waitForRunningPods(env, ns.name, 'app', 1);
    const containerd = connectContainerd({ socket: env.nodeSockets.get('node-b')! });
    try {
      // This transfer's own lease and ingests: an earlier test on this cluster whose import was cut off (a controller
      // killed, a namespace deleted mid-transfer) may have left its lease to expire by design (gc.expire).
      const hex = image.target.digest.replace(/^sha256:/, '');
      const blobs = [...image.blobs.keys()];
      const leases = (await containerd.leases.list()).map((l) => l.id).filter((id) => id === `tote-import-${hex}`);
      const ingests = (await containerd.content.listIngests())
        .map((i) => i.ref)
        .filter((ref) => blobs.some((d) => ref.includes(d)));
      assert.deepEqual(leases, [], 'no import lease left on node-b');
      assert.deepEqual(ingests, [], 'no ingest left on node-b');
    } finally {
      containerd.close();
    }
  });
});
