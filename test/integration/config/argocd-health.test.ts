// The Argo CD health checks in config/argocd, run by a real Lua 5.1 against objects of every phase and condition the
// CRDs allow. The phase list is read from the CRD, so a phase added without a health mapping fails here; the policy
// samples' conditions are made by the controller's own policyConditions.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { policyConditions } from '../../../src/controller/policy/policy-reconciler.ts';
import { repoRoot } from '../../support/cluster.ts';
import { runHealthScript, toLuaLiteral } from '../../support/lua.ts';

const recordScript = join(repoRoot, 'config/argocd/salvagerecord-health.lua');
const policyScript = join(repoRoot, 'config/argocd/salvagepolicy-health.lua');
const now = new Date('2026-12-01T10:00:00Z');

/** The phases crds/tote.dev_salvagerecords.yaml lets status.phase take. */
function crdPhases(): string[] {
  const crd = parse(readFileSync(join(repoRoot, 'crds/tote.dev_salvagerecords.yaml'), 'utf8'));
  return crd.spec.versions[0].schema.openAPIV3Schema.properties.status.properties.phase.enum;
}

const expectedRecordHealth: Record<string, string> = {
  Pending: 'Progressing',
  Resolving: 'Progressing',
  Locating: 'Progressing',
  Transferring: 'Progressing',
  Importing: 'Progressing',
  Restarting: 'Progressing',
  Pushing: 'Progressing',
  Completed: 'Healthy',
  Failed: 'Degraded',
  NotActionable: 'Degraded',
  Skipped: 'Degraded',
};

const recordAt = (phase: string | undefined, generation = 1, observedGeneration = 1) => ({
  apiVersion: 'tote.dev/v1alpha1',
  kind: 'SalvageRecord',
  metadata: { name: 'app-6f1c', namespace: 'team', generation },
  spec: { imageRef: 'registry.example.com/team/app:1.4', targetNode: 'node-b', reason: 'ErrImagePull' },
  ...(phase === undefined ? {} : { status: { phase, observedGeneration, message: `in ${phase} — “quoted”` } }),
});

describe('Argo CD health: SalvageRecord', () => {
  it('maps every phase of the CRD, no more and no fewer', () => {
    assert.deepEqual(crdPhases().sort(), Object.keys(expectedRecordHealth).sort());
  });

  for (const [phase, health] of Object.entries(expectedRecordHealth)) {
    it(`${phase} → ${health}, with the phase and message`, () => {
      const result = runHealthScript(recordScript, recordAt(phase));
      assert.equal(result.status, health);
      assert.equal(result.message, `${phase}: in ${phase} — “quoted”`);
    });
  }

  it('a record with no status yet is Progressing', () => {
    assert.equal(runHealthScript(recordScript, recordAt(undefined)).status, 'Progressing');
  });

  it('a Completed status written for an older generation is Progressing', () => {
    const result = runHealthScript(recordScript, recordAt('Completed', 2, 1));
    assert.equal(result.status, 'Progressing');
    assert.match(result.message, /generation 2/);
  });

  it('a phase this script does not know is Unknown, not Healthy', () => {
    assert.equal(runHealthScript(recordScript, recordAt('Teleporting')).status, 'Unknown');
  });
});

describe('Argo CD health: SalvagePolicy', () => {
  const policyWith = (status: object | undefined, generation = 3) => ({
    apiVersion: 'tote.dev/v1alpha1',
    kind: 'SalvagePolicy',
    metadata: { name: 'production', generation },
    spec: { namespaceSelector: { matchLabels: { 'tote.dev/salvage': 'enabled' } } },
    ...(status ? { status } : {}),
  });
  const missingSecret = {
    reason: 'SecretNotFound',
    message: 'spec.backup.credentialsSecretRef: Secret a/b does not exist',
  };

  it('Ready=True → Healthy', () => {
    const conditions = policyConditions(undefined, undefined, now);
    const result = runHealthScript(policyScript, policyWith({ observedGeneration: 3, conditions }));
    assert.deepEqual(result, { status: 'Healthy', message: 'policy is in force' });
  });

  it('Ready=False (Stalled) → Degraded, naming the reason and the field', () => {
    const conditions = policyConditions(undefined, missingSecret, now);
    const result = runHealthScript(policyScript, policyWith({ observedGeneration: 3, conditions }));
    assert.deepEqual(result, { status: 'Degraded', message: `SecretNotFound: ${missingSecret.message}` });
  });

  it('no status yet → Progressing', () => {
    assert.equal(runHealthScript(policyScript, policyWith(undefined)).status, 'Progressing');
  });

  it('a status for an older generation → Progressing, even when it said Ready', () => {
    const conditions = policyConditions(undefined, undefined, now);
    assert.equal(
      runHealthScript(policyScript, policyWith({ observedGeneration: 2, conditions })).status,
      'Progressing',
    );
  });

  it('status without a Ready condition, or Ready=Unknown → Progressing', () => {
    assert.equal(runHealthScript(policyScript, policyWith({ observedGeneration: 3 })).status, 'Progressing');
    const unknown = [{ type: 'Ready', status: 'Unknown', reason: 'Checking', message: '' }];
    assert.equal(
      runHealthScript(policyScript, policyWith({ observedGeneration: 3, conditions: unknown })).status,
      'Progressing',
    );
  });
});

describe('toLuaLiteral', () => {
  it('carries newlines, quotes, backslashes and non-ASCII text through Lua unchanged', () => {
    const text = 'a "b" \\ c\nd — é "1 \n2 {"k":"v"}';
    const status = { phase: 'Completed', observedGeneration: 1, message: text };
    assert.equal(runHealthScript(recordScript, { ...recordAt('Completed'), status }).message, `Completed: ${text}`);
  });

  it('writes arrays as sequences and null as nil', () => {
    assert.equal(toLuaLiteral([1, true, null]), '{1, true, nil}');
  });
});
