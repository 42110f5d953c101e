// PinImage against a real containerd: tote's pin labels every record of the digest, renews, and comes off again; a
// record someone else pinned is never touched; a pin nobody renewed is swept; ListImages reports tote's pin.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isToteError } from '../../../src/api/errors.ts';
import { connectAgent } from '../../../src/agentapi/index.ts';
import { criPinnedLabel, totePinnedUntilLabel } from '../../../src/containerd/index.ts';
import { sweepLapsedPins } from '../../../src/agent/pins.ts';
import { seedImage } from '../../support/containerd-images.ts';
import { buildImage } from '../../support/images.ts';
import { makeCluster } from './harness.ts';
import type { Cluster, TestNode } from './harness.ts';

describe('agent: PinImage', () => {
  let cluster: Cluster;
  let node: TestNode;
  before(async () => {
    cluster = makeCluster();
    node = await cluster.startNode('node-pin');
  });
  after(async () => {
    await cluster?.stop();
  });

  const labelsOf = async (digest: string) =>
    Object.fromEntries(
      (await node.containerd.images.list([`target.digest==${digest}`])).map((r) => [
        r.name,
        [r.labels[criPinnedLabel] ?? '', r.labels[totePinnedUntilLabel] ?? ''],
      ]),
    );

  it('pins every record until a time, reports it, renews it, and removes only its own pin', async () => {
    const image = buildImage({ repository: 'protect/pinned', tag: '1', layers: [{ size: 1000 }] });
    await seedImage(node.containerd, image, { name: 'registry.test/protect/pinned:1' });
    const digest = image.target.digest;
    const client = cluster.client(node);
    const until = new Date(Date.UTC(2030, 0, 1));
    const seconds = String(until.getTime() / 1000);

    const pinned = await client.pinImage({ digest, until });
    assert.equal(pinned.names.length, 3, 'tag, repo@digest and the config id record');
    for (const [name, labels] of Object.entries(await labelsOf(digest)))
      assert.deepEqual(labels, ['pinned', seconds], name);
    const [listed] = await client.listImages([digest]);
    assert.equal(listed?.pinned, true);
    assert.equal(listed?.pinnedUntil, until.getTime() / 1000);

    assert.deepEqual((await client.pinImage({ digest, until })).names, [], 'the same pin again changes nothing');
    const later = new Date(until.getTime() + 3_600_000);
    assert.equal((await client.pinImage({ digest, until: later })).names.length, 3, 'renewed');

    const unpinned = await client.pinImage({ digest });
    assert.equal(unpinned.names.length, 3);
    for (const [name, labels] of Object.entries(await labelsOf(digest))) assert.deepEqual(labels, ['', ''], name);
    assert.equal((await client.listImages([digest]))[0]?.pinnedUntil, 0);
  });

  it('leaves a record pinned by someone else as it is, pinning or unpinning', async () => {
    const image = buildImage({ repository: 'protect/theirs', tag: '1', layers: [{ size: 1000 }] });
    await seedImage(node.containerd, image, { name: 'registry.test/protect/theirs:1' });
    const digest = image.target.digest;
    const [record] = await node.containerd.images.list([`target.digest==${digest}`]);
    assert.ok(record);
    await node.containerd.images.update(
      { name: record.name, target: record.target, labels: { ...record.labels, [criPinnedLabel]: 'pinned' } },
      [`labels.${criPinnedLabel}`],
    );
    const client = cluster.client(node);
    const pinned = await client.pinImage({ digest, until: new Date(Date.UTC(2030, 0, 1)) });
    assert.ok(!pinned.names.includes(record.name), 'their record is not taken over');
    await client.pinImage({ digest });
    assert.deepEqual((await labelsOf(digest))[record.name], ['pinned', ''], 'their pin stays');
  });

  it('sweeps a pin that lapsed un-renewed, and no other', async () => {
    const lapsed = buildImage({ repository: 'protect/lapsed', tag: '1', layers: [{ size: 1000 }] });
    const current = buildImage({ repository: 'protect/current', tag: '1', layers: [{ size: 1000 }] });
    await seedImage(node.containerd, lapsed, { name: 'registry.test/protect/lapsed:1' });
    await seedImage(node.containerd, current, { name: 'registry.test/protect/current:1' });
    const client = cluster.client(node);
    const now = Math.floor(Date.now() / 1000);
    await client.pinImage({ digest: lapsed.target.digest, until: new Date((now + 10) * 1000) });
    await client.pinImage({ digest: current.target.digest, until: new Date((now + 3600) * 1000) });

    const swept = await sweepLapsedPins(node.containerd, now + 60);
    assert.equal(swept.length, 3, swept.join(', '));
    for (const labels of Object.values(await labelsOf(lapsed.target.digest))) assert.deepEqual(labels, ['', '']);
    for (const labels of Object.values(await labelsOf(current.target.digest)))
      assert.deepEqual(labels, ['pinned', String(now + 3600)]);
  });

  it('refuses PinImage from anyone but the controller', async () => {
    const image = buildImage({ repository: 'protect/refused', tag: '1', layers: [{ size: 1000 }] });
    await seedImage(node.containerd, image, { name: 'registry.test/protect/refused:1' });
    const asAgent = connectAgent({
      address: node.agent.address,
      tls: cluster.pki.issue({ kind: 'agent', node: 'node-other' }),
      server: { kind: 'agent', node: node.name },
    });
    try {
      await assert.rejects(
        asAgent.pinImage({ digest: image.target.digest, until: new Date(Date.UTC(2030, 0, 1)) }),
        (err) => isToteError(err, 'unauthorized') && err.reason === 'NotController',
      );
    } finally {
      asAgent.close();
    }
    for (const labels of Object.values(await labelsOf(image.target.digest))) assert.deepEqual(labels, ['', '']);
  });
});
