// The pure halves of `tote migrate`: which records came from tote 0.x and the status each gets; the policy 0.x flags
// become, and sizes as quantities.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { SalvageRecord } from '../../../src/api/index.ts';
import { byteQuantity, policyFromV0Flags } from '../../../src/cmd/migrate/policy.ts';
import { migratedStatus, needsMigration } from '../../../src/cmd/migrate/records.ts';
import { digest, now, record } from '../controller/factories.ts';

const v0 = (
  status: Record<string, string> | undefined,
  spec: Record<string, string> = { podName: 'app-1', sourceNode: 'node-a' },
) => ({ ...record(status as never, { digest, ...spec } as never) }) as SalvageRecord;
const options = { name: 'from-v0', namespaceLabel: 'tote.dev/salvage=enabled', toteNamespace: 'tote-system' };

describe('needsMigration', () => {
  it('a record with 0.x fields, or a phase without history, is 0.x; this tote’s records and migrated ones are not', () => {
    assert.equal(needsMigration(v0({ phase: 'Completed' })), true);
    assert.equal(needsMigration(v0(undefined)), true, 'podName alone says 0.x');
    assert.equal(needsMigration(v0({ phase: 'Done' }, {})), true, 'a phase without history');
    assert.equal(needsMigration(record({ phase: 'Completed', history: [] })), false);
    assert.equal(needsMigration(record()), false, 'a new record without status yet');
    assert.equal(
      needsMigration({ ...v0({ phase: 'Completed' }), status: migratedStatus(v0({ phase: 'Completed' }), now) }),
      false,
    );
  });
});

describe('migratedStatus', () => {
  for (const [oldPhase, phase, message] of [
    ['Completed', 'Completed', /^salvaged by tote 0.x/],
    ['Succeeded', 'Completed', /^salvaged by tote 0.x/],
    ['Failed', 'Failed', /^failed under tote 0.x \(tote 0.x wrote phase Failed, error: boom\)/],
    ['Transferring', 'Failed', /^interrupted by the upgrade from tote 0.x/],
    [undefined, 'Failed', /^interrupted .*phase \(none\)/],
  ] as const) {
    it(`0.x phase ${oldPhase} → ${phase}`, () => {
      const old = v0({ ...(oldPhase ? { phase: oldPhase } : {}), error: 'boom', completedAt: '2026-01-02T03:04:05Z' });
      const status = migratedStatus(old, now);
      assert.equal(status.phase, phase);
      assert.match(status.message ?? '', message);
      assert.equal(status.completedAt, '2026-01-02T03:04:05Z');
      assert.equal((status as { error?: string }).error, 'boom', 'the 0.x error is kept');
      assert.equal(status.sourceNode, 'node-a');
      assert.equal(status.digest, digest);
      assert.equal(status.history?.at(-1)?.reason, 'MigratedFromV0');
      const types = Object.fromEntries((status.conditions ?? []).map((c) => [c.type, c.status]));
      assert.deepEqual(types, phase === 'Completed' ? { Ready: 'True' } : { Ready: 'False', Stalled: 'True' });
    });
  }

  it('a source node that is not a node name is left in spec only', () => {
    assert.equal(
      migratedStatus(v0({ phase: 'Failed' }, { podName: 'p', sourceNode: 'Node_A' }), now).sourceNode,
      undefined,
    );
  });
});

describe('policyFromV0Flags', () => {
  it('maps each 0.x flag to its field, or to a note saying where it went', () => {
    const { policy, notes } = policyFromV0Flags(
      [
        '--max-image-size=2GiB',
        '--backup-registry',
        'http://backup:5000/tote',
        '--webhook-url=https://h/x?token=t',
        '--webhook-events=salvaged,weird',
        '--salvagerecord-ttl=72h',
        '--json-log',
        '--nope=1',
      ],
      options,
    );
    assert.deepEqual(policy.spec, {
      namespaceSelector: { matchLabels: { 'tote.dev/salvage': 'enabled' } },
      limits: { maxImageSize: '2Gi' },
      backup: { target: 'backup:5000/tote', insecure: true },
      notifications: {
        webhook: { urlSecretRef: { namespace: 'tote-system', name: 'tote-webhook', key: 'url' } },
        events: ['Salvaged'],
      },
      recordTTL: '72h',
    });
    const text = notes.join('\n');
    assert.doesNotMatch(text, /token=t/, 'the webhook URL never appears');
    for (const expected of [
      /tote\.dev\/allow/,
      /credentialsSecretRef/,
      /create secret generic tote-webhook/,
      /weird/,
      /--log-format=json/,
      /--nope: not a tote 0.x flag/,
    ])
      assert.match(text, expected);
  });

  it('a value tote cannot read is left out with a note, not guessed', () => {
    const { policy, notes } = policyFromV0Flags(['--max-image-size=huge', '--salvagerecord-ttl=forever'], options);
    assert.equal(policy.spec.limits, undefined);
    assert.equal(policy.spec.recordTTL, undefined);
    assert.equal(notes.filter((n) => /by hand/.test(n)).length, 2);
  });
});

describe('byteQuantity', () => {
  for (const [input, output] of [
    ['2GB', '2G'],
    ['2GiB', '2Gi'],
    ['512Mi', '512Mi'],
    ['100KB', '100k'],
    ['1073741824', '1073741824'],
    ['2 GB', '2G'],
    ['lots', undefined],
  ] as const) {
    it(`${input} → ${output}`, () => assert.equal(byteQuantity(input), output));
  }
});
