import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { policyConditions } from '../../../src/controller/policy/policy-reconciler.ts';

const now = new Date('2026-01-02T03:04:05Z');
const later = new Date('2026-01-02T04:00:00Z');
const secretMissing = {
  reason: 'SecretNotFound',
  message: 'spec.backup.credentialsSecretRef: Secret x/y does not exist',
};
const byType = (list: ReturnType<typeof policyConditions>) => Object.fromEntries(list.map((c) => [c.type, c]));

describe('policyConditions: Ready plus kstatus Stalled', () => {
  it('a policy in force is Ready and not Stalled', () => {
    const conditions = byType(policyConditions(undefined, undefined, now));
    assert.equal(conditions.Ready?.status, 'True');
    assert.equal(conditions.Stalled, undefined);
    assert.equal(conditions.Reconciling, undefined, 'a policy is checked in one pass');
  });

  it('a policy that needs a person is Ready=False and Stalled=True with the same reason', () => {
    const conditions = byType(policyConditions(undefined, secretMissing, now));
    assert.equal(conditions.Ready?.status, 'False');
    assert.equal(conditions.Stalled?.status, 'True');
    assert.equal(conditions.Stalled?.reason, 'SecretNotFound');
    assert.equal(conditions.Stalled?.message, secretMissing.message);
  });

  it('fixing the policy removes Stalled and flips Ready, moving its transition time', () => {
    const broken = policyConditions(undefined, secretMissing, now);
    const fixed = byType(policyConditions(broken, undefined, later));
    assert.equal(fixed.Stalled, undefined);
    assert.equal(fixed.Ready?.status, 'True');
    assert.equal(fixed.Ready?.lastTransitionTime, later.toISOString());
  });

  it('a policy still broken keeps its transition times', () => {
    const broken = policyConditions(undefined, secretMissing, now);
    const again = byType(policyConditions(broken, secretMissing, later));
    assert.equal(again.Stalled?.lastTransitionTime, now.toISOString());
    assert.equal(again.Ready?.lastTransitionTime, now.toISOString());
  });
});
