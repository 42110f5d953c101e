import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { expiredRecords } from '../../../src/controller/record/ttl.ts';
import { now, record } from './factories.ts';

const hour = 3_600_000;
const finished = (phase: string, hoursAgo: number, policy?: string) => {
  const r = record(
    { phase: phase as never, completedAt: new Date(now.getTime() - hoursAgo * hour).toISOString() },
    policy ? { policyRef: { name: policy } } : {},
  );
  r.metadata = { ...r.metadata, name: `${phase}-${hoursAgo}-${policy ?? 'none'}` };
  return r;
};
const ttl = (name: string | undefined) => (name === 'short' ? 1 * hour : 168 * hour);

describe('expiredRecords', () => {
  it('expires finished records older than their policy TTL and keeps the rest', () => {
    const records = [
      finished('Completed', 200),
      finished('Completed', 100),
      finished('Failed', 2, 'short'),
      finished('NotActionable', 0.5, 'short'),
      finished('Skipped', 169),
      record({ phase: 'Transferring', startedAt: new Date(now.getTime() - 1000 * hour).toISOString() }),
      record({ phase: 'Completed' }),
    ];
    const names = expiredRecords(records, ttl, now)
      .map((e) => e.name)
      .sort();
    assert.deepEqual(names, ['Completed-200-none', 'Failed-2-short', 'Skipped-169-none']);
  });

  it('reports the age', () => {
    const [e] = expiredRecords([finished('Completed', 200)], ttl, now);
    assert.equal(e?.ageMs, 200 * hour);
  });
});
