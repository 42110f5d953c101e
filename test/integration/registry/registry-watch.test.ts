// RegistryWatch (the protection's "does the registry still serve this digest?") against a real docker-registry: the
// answers serves / gone / unreachable, each (repository, digest) asked at most once per interval, and when the next
// answer is due.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RegistryWatch } from '../../../src/controller/protection/registry-watch.ts';
import { RegistryClient } from '../../../src/registry/index.ts';
import { ManualClock } from '../../../src/runtime/clock.ts';
import { silentLogger } from '../../../src/runtime/logging.ts';
import { freePort, startRegistry } from '../../support/registry-process.ts';
import type { RunningRegistry } from '../../support/registry-process.ts';
import { buildImage, memorySource } from './image-fixtures.ts';

describe('RegistryWatch', () => {
  let registry: RunningRegistry;
  let stopped = false;
  before(async () => {
    registry = await startRegistry();
  });
  after(async () => {
    if (!stopped) await registry?.stop();
  });

  test('serves, gone, unreachable; cached for the interval; due when the interval ends', async () => {
    const image = buildImage({ seed: 170, layers: 1 });
    const ref = `${registry.host}/protect/app:v1`;
    const client = new RegistryClient({ plainHttp: true });
    await client.push(ref, image.root, memorySource(image));
    client.close();
    const clock = new ManualClock();
    const watch = new RegistryWatch({ clock, log: silentLogger, timeoutMs: 2_000 });
    const interval = { intervalMs: 60_000 };
    const served = { imageRef: ref, digest: image.root.digest };
    const missing = { imageRef: ref, digest: `sha256:${'0'.repeat(64)}` };

    assert.equal(watch.dueInMs([served], 60_000), 0, 'never asked: due now');
    assert.equal(await watch.check(served.imageRef, served.digest, interval), 'serves');
    assert.equal(await watch.check(missing.imageRef, missing.digest, interval), 'gone');
    assert.equal(watch.asked, 2);

    await clock.advance(20_000);
    assert.equal(watch.dueInMs([served, missing], 60_000), 40_000);
    await registry.stop();
    stopped = true;
    assert.equal(await watch.check(served.imageRef, served.digest, interval), 'serves', 'trusted within the interval');
    assert.equal(watch.asked, 2, 'not asked again within the interval');

    await clock.advance(40_001);
    assert.equal(watch.dueInMs([served], 60_000), 0);
    assert.equal(await watch.check(served.imageRef, served.digest, interval), 'unreachable');
    assert.equal(watch.asked, 3);
  });

  test('concurrent questions about one digest share one request', async () => {
    const watch = new RegistryWatch({ clock: new ManualClock(), log: silentLogger, timeoutMs: 2_000 });
    const ref = `127.0.0.1:${await freePort()}/nobody/home:v1`;
    const digest = `sha256:${'1'.repeat(64)}`;
    const answers = await Promise.all([1, 2, 3].map(() => watch.check(ref, digest, { intervalMs: 60_000 })));
    assert.deepEqual(answers, ['unreachable', 'unreachable', 'unreachable']);
    assert.equal(watch.asked, 1);
  });
});
