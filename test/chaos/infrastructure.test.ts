// Chaos: what tote depends on fails under it — containerd restarted mid-import, the backup registry down during the
// push, and an image registry that accepts connections and never answers (kube-apiserver killed and restarted is in
// apiserver-restart.chaos.ts: it takes minutes, so it runs in `make test-chaos` only).
// Runs on the chaos cluster (test/support/chaos.ts), never the shared one.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer } from 'node:net';
import type { Socket } from 'node:net';
import { connectContainerd } from '../../src/containerd/index.ts';
import { kubectl, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import {
  acquireChaosLock,
  criHasImage,
  ensureChaosTote,
  entries,
  killComponent,
  useChaosCluster,
} from '../support/chaos.ts';
import {
  deployment,
  lostImage,
  scopedPolicy,
  backupPolicy,
  waitForRecords,
  waitForRunningPods,
} from '../support/salvage.ts';
import { startAgent } from '../support/tote.ts';
import type { ToteDeployment } from '../support/tote.ts';

const mib = 1024 * 1024;

let env: ClusterEnv;
let tote: ToteDeployment;
let release: () => void = () => undefined;

/** Whether something accepts TCP connections at host:port. */
function tcpOpen(address: string): Promise<boolean> {
  const [host, port] = [
    address.slice(0, address.lastIndexOf(':')),
    Number(address.slice(address.lastIndexOf(':') + 1)),
  ];
  return new Promise((resolve) => {
    const s = connect(port, host, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

describe('chaos: infrastructure faults', () => {
  before(async () => {
    release = await acquireChaosLock();
    env = await useChaosCluster();
    tote = await ensureChaosTote(env);
  });
  after(() => release());

  it('containerd restarted mid-import: CRI never shows a half image, and the salvage completes', async (t) => {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, { limits: { bandwidthPerTransfer: '4Mi' } }, t);
    const image = await lostImage(
      env,
      { repository: `chaos/${ns.name}`, tag: 'v1', layers: [{ size: 8 * mib }, { size: 24 * mib }] },
      ['node-a'],
    );
    const ref = image.reference(env.sourceRegistry);
    const socket = env.nodeSockets.get('node-b')!;
    const platform = image.platforms[0]!;
    const blobs = [platform.manifest, platform.config, ...platform.layers];

    // The invariant, checked every time CRI answers until the record completes: whenever CRI reports the image,
    // every blob of it is committed on the node with its full size.
    let stop = false;
    let checks = 0;
    let seenWhole = 0;
    const violations: string[] = [];
    const watcher = (async () => {
      while (!stop) {
        const present = await criHasImage(socket, ref).catch(() => undefined);
        if (present === undefined) continue; // containerd is down: nothing for a kubelet to see either
        checks++;
        if (!present) continue;
        seenWhole++;
        const c = connectContainerd({ socket });
        try {
          for (const b of blobs) {
            const info = await c.content.info(b.digest).catch(() => undefined);
            if (info?.size !== b.size)
              violations.push(`CRI shows ${ref} while ${b.digest} is ${info?.size ?? 'absent'}`);
          }
        } finally {
          c.close();
        }
      }
    })();
    t.after(async () => {
      stop = true;
      await watcher;
    });

    await deployment(env, ns.name, 'app', ref, ['node-b']);
    const [moving] = await waitForRecords(
      env,
      ns.name,
      1,
      (r) => r.status?.phase === 'Transferring' && (r.status.progress?.transferredBytes ?? 0) >= 4 * mib,
    );
    t.diagnostic(`restarting containerd of node-b at ${moving?.status?.progress?.transferredBytes} B transferred`);
    const containerd = await killComponent(env, 'containerd-node-b');
    assert.equal(await criHasImage(socket, ref).catch(() => false), false, 'nothing answers while containerd is down');
    // Ready means the CRI plugin answers too: containerd serves its own API first and CRI calls fail with "server is
    // not initialized yet" for a moment after.
    await containerd.restart(async () => {
      const c = connectContainerd({ socket });
      try {
        if ((await c.version()).version === '') return false;
      } finally {
        c.close();
      }
      await criHasImage(socket, ref);
      return true;
    });
    assert.equal(await criHasImage(socket, ref), false, 'right after the restart CRI does not know the image');

    const [done] = await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Completed', {
      timeoutMs: 180_000,
    });
    assert.ok(done);
    for (const h of done.status?.history ?? [])
      t.diagnostic(`${h.phase} ${h.reason}: ${(h.message ?? '').slice(0, 160)}`);
    assert.equal(entries(done, 'Completed'), 1);
    await waitForRunningPods(env, ns.name, 'app', 1, { timeoutMs: 120_000 });
    stop = true;
    await watcher;
    t.diagnostic(`CRI polled ${checks} times, the image visible in ${seenWhole} of them`);
    assert.deepEqual(violations, []);
    assert.ok(checks > 10, 'CRI was really polled while the import ran');
  });

  it('backup registry down during the push: the salvage completes and the record says the push failed', async (t) => {
    const ns = await testNamespace(env, t);
    await backupPolicy(env, ns, `${env.backupRegistry}/chaos`, {}, t);
    const image = await lostImage(env, { repository: `chaos/${ns.name}`, layers: 2, layerSize: mib }, ['node-a']);
    const registry = await killComponent(env, 'registry-backup');
    t.after(() => registry.restart(() => tcpOpen(env.backupRegistry)));
    await deployment(env, ns.name, 'app', image.reference(env.sourceRegistry), ['node-b']);
    const [done] = await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Completed', {
      timeoutMs: 120_000,
    });
    assert.ok(done);
    t.diagnostic(`backup: ${JSON.stringify(done.status?.backup)}`);
    assert.equal(done.status?.backup?.result, 'Failed');
    assert.match(done.status?.backup?.message ?? '', /127\.0\.0\.1|refused|unreachable/i);
    const backedUp = done.status?.conditions?.find((c) => c.type === 'BackedUp');
    assert.equal(backedUp?.status, 'False');
    assert.equal(done.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True', 'the salvage succeeded');
    await waitForRunningPods(env, ns.name, 'app', 1);
  });

  it('a registry that accepts and never answers: tag resolution gives up after the policy timeout and says so', async (t) => {
    const sockets = new Set<Socket>();
    let connections = 0;
    const hang = createServer((s) => {
      connections++;
      sockets.add(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => hang.listen(0, '127.0.0.1', resolve));
    t.after(
      () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          hang.close(() => resolve());
        }),
    );
    const port = (hang.address() as { port: number }).port;
    const ns = await testNamespace(env, t);
    const policy = await scopedPolicy(env, ns, { tagResolution: { enabled: true, timeout: '2s' } }, t);
    const started = Date.now();
    const created = await kubectl(env, ['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'tote.dev/v1alpha1',
        kind: 'SalvageRecord',
        metadata: { name: 'hanging-registry', namespace: ns.name },
        spec: { imageRef: `127.0.0.1:${port}/hang/app:v1`, targetNode: 'node-b', policyRef: { name: policy } },
      }),
    });
    assert.equal(created.code, 0, created.stderr);
    const [record] = await waitForRecords(env, ns.name, 1, (r) => /within 2000ms/.test(r.status?.message ?? ''), {
      timeoutMs: 30_000,
    });
    const elapsed = Date.now() - started;
    t.diagnostic(`after ${elapsed} ms: ${record?.status?.phase}: ${record?.status?.message}`);
    assert.equal(record?.status?.phase, 'Resolving', 'still resolving, retrying later');
    assert.match(record?.status?.message ?? '', /no answer from 127\.0\.0\.1:\d+ within 2000ms/);
    assert.ok(elapsed >= 2_000, `the lookup waited the policy's 2s (${elapsed} ms)`);
    assert.ok(connections >= 1, 'the registry was really asked');
    // The agent on node-b is untouched by all this.
    await startAgent(env, tote.paths, 'node-b');
  });
});
