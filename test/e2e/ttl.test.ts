// The TTL cleaner of the running controller (the test harness runs it every 2 s): a finished record older than its
// policy's recordTTL is deleted; a finished record under the default 168h TTL is kept. The kept record finished
// before the expiring one, so the pass that deleted the latter had the former in front of it too.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ensureCluster, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import { ensureTote } from '../support/tote.ts';
import { deployment, listRecords, lostImage, recordsPath, scopedPolicy, waitForRecords } from '../support/salvage.ts';
import { waitForDeleted } from '../support/wait.ts';

let env: ClusterEnv;

describe('TTL cleaner', () => {
  before(async () => {
    env = await ensureCluster();
    await ensureTote(env);
  });

  it('deletes a finished record past its policy TTL and keeps a fresh one', async (t) => {
    const keep = await testNamespace(env, { name: 'ttl-keep', after: (fn) => t.after(fn) });
    const expire = await testNamespace(env, { name: 'ttl-expire', after: (fn) => t.after(fn) });
    await scopedPolicy(env, keep, { recordTTL: '168h' }, t);
    await scopedPolicy(env, expire, { recordTTL: '1s' }, t);

    const kept = await lostImage(env, { repository: `ttl/${keep.name}`, layerSize: 64 * 1024 }, ['node-a']);
    await deployment(env, keep.name, 'app', kept.reference(env.sourceRegistry), ['node-b']);
    const [fresh] = await waitForRecords(env, keep.name, 1, (r) => r.status?.phase === 'Completed');
    assert.ok(fresh?.metadata?.name);

    const expiring = await lostImage(env, { repository: `ttl/${expire.name}`, layerSize: 64 * 1024 }, ['node-a']);
    await deployment(env, expire.name, 'app', expiring.reference(env.sourceRegistry), ['node-b']);
    const [old] = await waitForRecords(env, expire.name, 1, (r) => r.status?.phase === 'Completed');
    assert.ok(old?.metadata?.name);
    await waitForDeleted(env, recordsPath(expire.name), old.metadata.name, { timeoutMs: 30_000 });

    const remaining = await listRecords(env, keep.name);
    assert.deepEqual(
      remaining.map((r) => [r.metadata?.name, r.metadata?.uid]),
      [[fresh.metadata.name, fresh.metadata?.uid]],
    );
  });
});
