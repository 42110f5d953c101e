import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { SalvageRecord } from '../../../src/api/index.ts';
import type { ControllerContext } from '../../../src/controller/context.ts';
import { controllerMetrics } from '../../../src/controller/metrics.ts';
import { startTtlCleaner } from '../../../src/controller/record/ttl-cleaner.ts';
import { ManualClock, settle } from '../../../src/runtime/clock.ts';
import { silentLogger } from '../../../src/runtime/logging.ts';
import { Registry } from 'prom-client';
import { record } from './factories.ts';

const hour = 3_600_000;

describe('TTL cleaner', () => {
  it('prunes on its cron schedule as the injected clock tells the time', async () => {
    const clock = new ManualClock(Date.parse('2026-01-01T00:00:30Z'));
    const old = record({ phase: 'Completed', completedAt: new Date(clock.now() - 200 * hour).toISOString() });
    const deleted: string[] = [];
    const c = {
      clock,
      log: silentLogger,
      metrics: controllerMetrics(new Registry()),
      caches: { policies: { list: () => [] }, records: { list: (): SalvageRecord[] => [old] } },
      kube: {
        delete: async (_r: unknown, name: string) => {
          deleted.push(name);
          return true;
        },
      },
    } as unknown as ControllerContext;
    const cleaner = startTtlCleaner(c, '0 * * * *'); // at the top of every hour
    await clock.advance(59 * 60_000);
    await settle();
    assert.deepEqual(deleted, [], 'not before the hour');
    await clock.advance(60_000);
    await settle();
    assert.deepEqual(deleted, ['r']);
    cleaner.stop();
    await clock.advance(2 * hour);
    await settle();
    assert.deepEqual(deleted, ['r'], 'nothing after stop()');
  });
});
