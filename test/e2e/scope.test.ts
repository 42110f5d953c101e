// What tote may touch: a DetectOnly policy reports and moves nothing; a namespace no policy selects and kube-system
// (even under a policy that selects every namespace) get no record. "No record" is asserted after the controller
// provably handled a later event: an in-scope twin of the stuck pod, stuck after it, reaches Completed first.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ensureCluster, kubectl, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import { ensureTote } from '../support/tote.ts';
import {
  apply,
  deployment,
  listRecords,
  lostImage,
  namespaceEvents,
  scopedPolicy,
  waitForRecords,
  waitForRunningPods,
} from '../support/salvage.ts';
import { nodeHasImage } from '../support/images.ts';
import { podsPath, waitForAny, waitingReason } from '../support/wait.ts';
import type { V1Pod } from '@kubernetes/client-node';

let env: ClusterEnv;

const stuck = ['ErrImagePull', 'ImagePullBackOff'];

/** Waits until a pod labelled app=`app` in `namespace` is stuck pulling its image. */
const waitStuck = (namespace: string, app: string) =>
  waitForAny<V1Pod>(env, podsPath(namespace), (p) => stuck.includes(waitingReason(p) ?? ''), {
    labelSelector: `app=${app}`,
    what: `a pod app=${app} in ${namespace} stuck pulling`,
  });

describe('scope: what tote may touch', () => {
  before(async () => {
    env = await ensureCluster();
    await ensureTote(env);
  });

  it('DetectOnly: the record is Skipped with a Salvageable Event naming the holder; nothing moves', async (t) => {
    const ns = await testNamespace(env, t);
    await scopedPolicy(env, ns, { mode: 'DetectOnly' }, t);
    const image = await lostImage(env, { repository: `detect/${ns.name}`, layers: 2, layerSize: 64 * 1024 }, [
      'node-a',
    ]);
    const ref = image.reference(env.sourceRegistry);
    await deployment(env, ns.name, 'app', ref, ['node-b']);

    const [record] = await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Skipped');
    assert.ok(record);
    assert.equal(record.spec.targetNode, 'node-b');
    const ready = record.status?.conditions?.find((c) => c.type === 'Ready');
    assert.equal(ready?.reason, 'DetectOnly', JSON.stringify(record.status?.conditions));
    assert.equal(record.status?.history?.at(-1)?.reason, 'DetectOnly');
    assert.equal(record.status?.sourceNode, undefined, 'no source chosen: nothing is copied');

    const events = await namespaceEvents(env, ns.name);
    const salvageable = events.filter((e) => e.reason === 'Salvageable');
    assert.ok(salvageable.length > 0, JSON.stringify(events));
    assert.ok(
      salvageable.some((e) => /node-a/.test(e.message) && e.message.includes(image.target.digest)),
      JSON.stringify(salvageable),
    );
    assert.ok(
      salvageable.some((e) => e.kind === 'Pod'),
      'the stuck pod carries the Event too',
    );
    assert.equal(await nodeHasImage(env.nodeSockets.get('node-b') ?? '', ref), false, 'node-b never got the image');
  });

  it('a namespace no policy selects gets no record, while an in-scope twin is salvaged', async (t) => {
    const outside = await testNamespace(env, { name: 'out-of-scope', after: (fn) => t.after(fn) });
    const inside = await testNamespace(env, t);
    await scopedPolicy(env, inside, {}, t);
    const image = await lostImage(env, { repository: `scope/${inside.name}`, layerSize: 64 * 1024 }, ['node-a']);
    const ref = image.reference(env.sourceRegistry);

    // The out-of-scope pod is stuck first (on node-c, which never gets the image), then the in-scope one.
    await deployment(env, outside.name, 'app', ref, ['node-c']);
    await waitStuck(outside.name, 'app');
    await deployment(env, inside.name, 'app', ref, ['node-b']);

    await waitForRecords(env, inside.name, 1, (r) => r.status?.phase === 'Completed');
    await waitForRunningPods(env, inside.name, 'app', 1);
    assert.deepEqual(await listRecords(env, outside.name), []);
    const stillStuck = await waitStuck(outside.name, 'app');
    assert.equal(stillStuck.spec?.nodeName, 'node-c');
  });

  it('kube-system is never touched, even by a policy that selects every namespace', async (t) => {
    const inside = await testNamespace(env, t);
    const app = `tote-scope-${randomBytes(3).toString('hex')}`;
    // No namespaceSelector: every namespace. The podSelector only keeps it from grabbing other tests' pods.
    await apply(env, {
      apiVersion: 'tote.dev/v1alpha1',
      kind: 'SalvagePolicy',
      metadata: { name: app },
      spec: { podSelector: { matchLabels: { app } } },
    });
    t.after(async () => {
      await kubectl(env, ['delete', 'salvagepolicy', app, '--wait=false']);
      await kubectl(env, ['delete', 'deployment', app, '-n', 'kube-system', '--wait=false']);
    });
    const image = await lostImage(env, { repository: `system/${inside.name}`, layerSize: 64 * 1024 }, ['node-a']);
    const ref = image.reference(env.sourceRegistry);

    await deployment(env, 'kube-system', app, ref, ['node-c']);
    await waitStuck('kube-system', app);
    await deployment(env, inside.name, app, ref, ['node-b']);

    const [record] = await waitForRecords(env, inside.name, 1, (r) => r.status?.phase === 'Completed');
    assert.equal(record?.spec.policyRef?.name, app);
    await waitForRunningPods(env, inside.name, app, 1);
    const system = (await listRecords(env, 'kube-system')).filter((r) => r.spec.imageRef === ref);
    assert.deepEqual(system, []);
    const stillStuck = await waitStuck('kube-system', app);
    assert.equal(stillStuck.spec?.nodeName, 'node-c');
  });
});
