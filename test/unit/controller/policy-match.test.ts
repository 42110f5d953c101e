import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { byPrecedence, decideScope } from '../../../src/controller/policy/policy-match.ts';
import type { ScopeSubject } from '../../../src/controller/policy/policy-match.ts';
import { matchesSelector } from '../../../src/controller/policy/label-selector.ts';
import { matchesRegistries } from '../../../src/controller/policy/registry-patterns.ts';
import { effectivePolicy, PolicyFieldError } from '../../../src/controller/policy/effective-policy.ts';
import { salvagePolicy } from './factories.ts';

const subject = (overrides: Partial<ScopeSubject> = {}): ScopeSubject => ({
  namespace: 'team',
  namespaceLabels: { 'tote.dev/salvage': 'enabled' },
  namespaceAnnotations: {},
  podLabels: { app: 'web' },
  podAnnotations: {},
  ownerAnnotations: [],
  repository: 'registry.example.com/team/app',
  ...overrides,
});

describe('matchesSelector', () => {
  const labels = { env: 'prod', team: 'a' };
  const cases: [string, Parameters<typeof matchesSelector>[0], boolean][] = [
    ['absent selects all', undefined, true],
    ['empty selects all', {}, true],
    ['matchLabels hit', { matchLabels: { env: 'prod' } }, true],
    ['matchLabels miss', { matchLabels: { env: 'dev' } }, false],
    ['In hit', { matchExpressions: [{ key: 'env', operator: 'In', values: ['prod', 'stage'] }] }, true],
    ['In on absent key', { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }] }, false],
    ['NotIn hit', { matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['prod'] }] }, false],
    ['NotIn on absent key', { matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] }, true],
    ['Exists', { matchExpressions: [{ key: 'team', operator: 'Exists' }] }, true],
    ['DoesNotExist', { matchExpressions: [{ key: 'team', operator: 'DoesNotExist' }] }, false],
    [
      'all must hold',
      { matchLabels: { env: 'prod' }, matchExpressions: [{ key: 'team', operator: 'In', values: ['b'] }] },
      false,
    ],
  ];
  for (const [name, selector, expected] of cases)
    it(name, () => assert.equal(matchesSelector(selector, labels), expected));
});

describe('matchesRegistries', () => {
  const cases: [string[] | undefined, string, boolean][] = [
    [undefined, 'docker.io/library/nginx', true],
    [[], 'docker.io/library/nginx', true],
    [['registry.example.com/**'], 'registry.example.com/team/app', true],
    [['registry.example.com/**'], 'registry.example.com', true],
    [['registry.example.com/**'], 'registry.example.com.evil.io/app', false],
    [['*.corp.example.com/**'], 'eu.corp.example.com/a/b', true],
    [['*.corp.example.com/**'], 'corp.example.com/a', false],
    [['docker.io/library/*'], 'docker.io/library/nginx', true],
    [['docker.io/library/*'], 'docker.io/library/nginx/extra', false],
    [['localhost:5000/**'], 'localhost:5000/team/app', true],
  ];
  for (const [patterns, repository, expected] of cases) {
    it(`${JSON.stringify(patterns)} ${expected ? 'matches' : 'does not match'} ${repository}`, () =>
      assert.equal(matchesRegistries(patterns, repository), expected));
  }
});

describe('decideScope', () => {
  const low = salvagePolicy('b-low', { priority: 1 });
  const high = salvagePolicy('z-high', { priority: 10 });
  const sameA = salvagePolicy('a', { priority: 5 });
  const sameB = salvagePolicy('b', { priority: 5 });

  it('orders by priority, then name', () => {
    assert.deepEqual(
      byPrecedence([low, sameB, high, sameA]).map((p) => p.metadata?.name),
      ['z-high', 'a', 'b', 'b-low'],
    );
  });

  it('picks the highest priority policy that selects the pod', () => {
    const d = decideScope([low, high], subject());
    assert.equal(d.inScope && d.policy?.metadata?.name, 'z-high');
  });

  it('skips policies whose selectors do not match', () => {
    const scoped = salvagePolicy('scoped', { priority: 100, namespaceSelector: { matchLabels: { team: 'other' } } });
    const d = decideScope([scoped, low], subject());
    assert.equal(d.inScope && d.policy?.metadata?.name, 'b-low');
  });

  it('skips policies whose registries do not match', () => {
    const other = salvagePolicy('other', { priority: 100, registries: ['ghcr.io/**'] });
    const d = decideScope([other], subject());
    assert.equal(d.inScope, false);
  });

  it('never selects a system namespace', () => {
    const d = decideScope([high], subject({ namespace: 'kube-system' }));
    assert.equal(d.inScope, false);
  });

  it('falls back to the Go tote annotations', () => {
    const d = decideScope(
      [],
      subject({
        namespaceAnnotations: { 'tote.dev/allow': 'true' },
        ownerAnnotations: [{}, { 'tote.dev/auto-salvage': 'true' }],
      }),
    );
    assert.deepEqual(d, { inScope: true, policy: undefined, via: 'annotations' });
  });

  it('needs both annotations', () => {
    assert.equal(decideScope([], subject({ podAnnotations: { 'tote.dev/auto-salvage': 'true' } })).inScope, false);
    assert.equal(decideScope([], subject({ namespaceAnnotations: { 'tote.dev/allow': 'true' } })).inScope, false);
  });

  it('ignores a policy being deleted', () => {
    const dying = { ...high, metadata: { ...high.metadata, deletionTimestamp: new Date() } };
    const d = decideScope([dying, low], subject());
    assert.equal(d.inScope && d.policy?.metadata?.name, 'b-low');
  });
});

describe('effectivePolicy', () => {
  it('applies defaults', () => {
    const p = effectivePolicy(salvagePolicy('p'));
    assert.equal(p.mode, 'Salvage');
    assert.equal(p.maxImageSizeBytes, 2 * 2 ** 30);
    assert.equal(p.recordTtlMs, 168 * 3_600_000);
    assert.equal(p.restartPod, true);
    assert.equal(p.backup, undefined);
  });
  it('parses quantities and durations', () => {
    const p = effectivePolicy(
      salvagePolicy('p', {
        limits: { maxImageSize: '500M', bandwidthPerTransfer: '50Mi' },
        recordTTL: '1h30m',
        tagResolution: { enabled: true, timeout: '3s' },
      }),
    );
    assert.equal(p.maxImageSizeBytes, 500e6);
    assert.equal(p.bandwidthBytesPerSecond, 50 * 2 ** 20);
    assert.equal(p.recordTtlMs, 5_400_000);
    assert.deepEqual(p.tagResolution, { enabled: true, timeoutMs: 3000 });
  });
  it('a value it cannot read fails naming the field', () => {
    const cases: [object, string][] = [
      [{ limits: { maxImageSize: '100m' } }, 'spec.limits.maxImageSize'],
      [{ limits: { bandwidthPerTransfer: '9Ei' } }, 'spec.limits.bandwidthPerTransfer'],
      [{ recordTTL: 'a week' }, 'spec.recordTTL'],
    ];
    for (const [spec, field] of cases) {
      assert.throws(
        () => effectivePolicy(salvagePolicy('p', spec)),
        (err: unknown) =>
          err instanceof PolicyFieldError && err.field === field && err.message.startsWith(`${field}: `),
        field,
      );
    }
  });
  it('a DetectOnly policy never carries a backup', () => {
    const p = effectivePolicy(salvagePolicy('p', { mode: 'DetectOnly', backup: { target: 'b.example.com' } }));
    assert.equal(p.backup, undefined);
  });
});
