import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  findCondition,
  isConditionTrue,
  removeCondition,
  setCondition,
  truncate,
} from '../../../src/api/conditions.ts';
import type { Condition } from '../../../src/api/conditions.ts';

const t0 = new Date('2026-01-01T00:00:00Z');
const t1 = new Date('2026-01-01T01:00:00Z');

const ready = (overrides: Partial<Condition> = {}): Condition => ({
  type: 'Ready',
  status: 'False',
  reason: 'Waiting',
  message: 'not yet',
  lastTransitionTime: t0.toISOString(),
  ...overrides,
});

describe('setCondition', () => {
  it('appends a new type with lastTransitionTime = now', () => {
    const out = setCondition(undefined, { type: 'Ready', status: 'True', reason: 'Ok', message: 'fine' }, t1);
    assert.deepEqual(out, [
      { type: 'Ready', status: 'True', reason: 'Ok', message: 'fine', lastTransitionTime: t1.toISOString() },
    ]);
  });

  it('keeps lastTransitionTime when only reason or message change', () => {
    const out = setCondition(
      [ready()],
      { type: 'Ready', status: 'False', reason: 'StillWaiting', message: 'later' },
      t1,
    );
    assert.equal(out[0]?.lastTransitionTime, t0.toISOString());
    assert.equal(out[0]?.reason, 'StillWaiting');
    assert.equal(out[0]?.message, 'later');
  });

  it('moves lastTransitionTime when status flips', () => {
    const out = setCondition([ready()], { type: 'Ready', status: 'True', reason: 'Ok', message: 'fine' }, t1);
    assert.equal(out[0]?.lastTransitionTime, t1.toISOString());
  });

  it('replaces in place, keeps other types and order, and never mutates its input', () => {
    const input = [ready(), ready({ type: 'Resolved', status: 'True' })];
    const frozen = structuredClone(input);
    const out = setCondition(
      input,
      { type: 'Ready', status: 'True', reason: 'Ok', message: 'm', observedGeneration: 3 },
      t1,
    );
    assert.deepEqual(input, frozen);
    assert.deepEqual(
      out.map((c) => c.type),
      ['Ready', 'Resolved'],
    );
    assert.equal(out[0]?.observedGeneration, 3);
  });

  it('cuts over-long messages so the status write stays valid', () => {
    const out = setCondition([], { type: 'Ready', status: 'True', reason: 'Ok', message: 'x'.repeat(40000) }, t1);
    assert.equal(out[0]?.message.length, 32768);
  });
});

describe('condition queries', () => {
  it('finds, tests and removes by type', () => {
    const list = [ready(), ready({ type: 'Resolved', status: 'True' })];
    assert.equal(findCondition(list, 'Resolved')?.status, 'True');
    assert.equal(findCondition(list, 'Missing'), undefined);
    assert.equal(isConditionTrue(list, 'Resolved'), true);
    assert.equal(isConditionTrue(list, 'Ready'), false);
    assert.equal(isConditionTrue(undefined, 'Ready'), false);
    assert.deepEqual(
      removeCondition(list, 'Ready').map((c) => c.type),
      ['Resolved'],
    );
  });

  it('truncate leaves short text alone and marks cuts', () => {
    assert.equal(truncate('abc', 5), 'abc');
    assert.equal(truncate('abcdef', 4), 'abc…');
  });
});
