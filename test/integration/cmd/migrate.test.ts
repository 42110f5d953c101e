// The upgrade from tote 0.x, as a user's cluster goes through it: a cluster of its own starts with tote 0.x's
// SalvageRecord CRD (test/fixtures/v0), records are written in the 0.x shape, then crds/ is applied over it. Every 0.x
// field must still read back (the CRD keeps them); `tote migrate records` gives each record this tote's status without
// touching them, once; `tote migrate policy` turns 0.x controller flags into a policy the API server accepts.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import type { SalvageRecord } from '../../../src/api/index.ts';
import { useClusterDir } from '../../support/chaos.ts';
import { ensureCluster, kubectl, repoRoot } from '../../support/cluster.ts';
import type { ClusterEnv } from '../../support/cluster.ts';

const run = promisify(execFile);
/** A cluster for this file alone: its CRDs are replaced, which the shared cluster's tests could not bear. */
const upgradeClusterDir = process.env.TOTE_UPGRADE_CLUSTER_DIR ?? '/tmp/tote-upgrade';
const namespace = 'legacy';
const digest = `sha256:${'5b0bcabd'.repeat(8)}`;

/** Records as tote 0.x wrote them: spec, then status through its status subresource. */
const v0Records = [
  { name: 'done', phase: 'Completed', error: undefined },
  { name: 'broke', phase: 'Failed', error: 'agent on node-a: connection refused' },
  { name: 'midway', phase: 'Transferring', error: undefined },
].map(({ name, phase, error }) => ({
  name,
  spec: {
    podName: `${name}-pod`,
    digest,
    imageRef: `registry.example.com/team/${name}:1`,
    sourceNode: 'node-a',
    targetNode: 'node-b',
  },
  status: { phase, completedAt: '2026-01-02T03:04:05Z', ...(error ? { error } : {}) },
}));

let env: ClusterEnv;

const kubectlOk = async (args: string[], input?: string) => {
  const result = await kubectl(env, args, input === undefined ? {} : { input });
  assert.equal(result.code, 0, `kubectl ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
};
const getRecord = async (name: string) =>
  JSON.parse(await kubectlOk(['get', 'salvagerecord', name, '-n', namespace, '-o', 'json'])) as SalvageRecord & {
    spec: Record<string, unknown>;
    status: Record<string, unknown>;
  };
const tote = (args: string[]) =>
  run(join(repoRoot, 'node_modules/.bin/node'), [join(repoRoot, 'src/cmd/tote.ts'), ...args], {
    env: { ...process.env, KUBECONFIG: env.kubeconfig },
    timeout: 60_000,
  });
const down = () =>
  run(join(repoRoot, 'hack/cluster/down.sh'), [], { env: { ...process.env, TOTE_CLUSTER_DIR: upgradeClusterDir } });

describe('upgrade from tote 0.x', () => {
  before(async () => {
    // From scratch every time: a cluster kept from an earlier run would already be upgraded.
    await down();
    useClusterDir(upgradeClusterDir);
    process.env.TOTE_CRD_DIR = join(repoRoot, 'test/fixtures/v0');
    // One node: the records only name nodes, and every cluster on the machine spends its inotify instances.
    process.env.TOTE_NODES = 'node-a';
    env = await ensureCluster();
    await kubectlOk(['create', 'namespace', namespace]);
    for (const r of v0Records) {
      const object = {
        apiVersion: 'tote.dev/v1alpha1',
        kind: 'SalvageRecord',
        metadata: { name: r.name, namespace },
        spec: r.spec,
      };
      await kubectlOk(['create', '-f', '-'], JSON.stringify(object));
      await kubectlOk([
        'patch',
        'salvagerecord',
        r.name,
        '-n',
        namespace,
        '--subresource=status',
        '--type=merge',
        '-p',
        JSON.stringify({ status: r.status }),
      ]);
    }
    // The upgrade: this tote's CRDs over 0.x's, as `kubectl apply -k config/default` or the chart would do.
    await kubectlOk(['apply', '--server-side', '--force-conflicts', '-f', join(repoRoot, 'crds')]);
    await kubectlOk(['wait', '--for=condition=Established', '--timeout=30s', '-f', join(repoRoot, 'crds')]);
  });
  after(async () => {
    await down();
  });

  it('every 0.x field still reads back after the CRDs are upgraded', async () => {
    for (const r of v0Records) {
      const record = await getRecord(r.name);
      for (const [field, value] of Object.entries(r.spec))
        assert.equal(record.spec[field], value, `${r.name} spec.${field}`);
      for (const [field, value] of Object.entries(r.status))
        assert.equal(record.status[field], value, `${r.name} status.${field}`);
    }
  });

  it('tote migrate records gives each record this tote’s status and keeps the 0.x fields', async () => {
    const { stdout } = await tote(['migrate', 'records']);
    assert.match(stdout, /3 record\(s\) migrated, 0 already in this tote's shape, 0 failed/);
    const expected: Record<string, { phase: string; ready: string; message: RegExp }> = {
      done: { phase: 'Completed', ready: 'True', message: /salvaged by tote 0.x/ },
      broke: { phase: 'Failed', ready: 'False', message: /failed under tote 0.x .*connection refused/ },
      midway: {
        phase: 'Failed',
        ready: 'False',
        message: /interrupted by the upgrade from tote 0.x \(tote 0.x wrote phase Transferring/,
      },
    };
    for (const r of v0Records) {
      const record = await getRecord(r.name);
      const want = expected[r.name]!;
      assert.equal(record.status.phase, want.phase, r.name);
      assert.match(String(record.status.message), want.message);
      assert.equal(record.status.sourceNode, 'node-a');
      assert.equal(record.status.completedAt, '2026-01-02T03:04:05Z');
      assert.equal(record.status.error, r.status.error, 'the 0.x error is kept');
      assert.equal(record.spec.podName, r.spec.podName, 'the 0.x pod name is kept');
      const conditions = (record.status.conditions ?? []) as { type: string; status: string }[];
      assert.equal(conditions.find((c) => c.type === 'Ready')?.status, want.ready);
      assert.equal(
        conditions.some((c) => c.type === 'Stalled' && c.status === 'True'),
        want.phase !== 'Completed',
      );
      assert.equal((record.status.history as { reason: string }[]).at(-1)?.reason, 'MigratedFromV0');
    }
    const table = await kubectlOk(['get', 'salvagerecords', '-n', namespace]);
    assert.match(table, /^midway\s+registry\.example\.com\/team\/midway:1\s+Rescue\s+Failed\s+node-a\s+node-b/m);
  });

  it('runs once: a second run changes nothing', async () => {
    const before = await getRecord('broke');
    const { stdout } = await tote(['migrate', 'records']);
    assert.match(stdout, /0 record\(s\) migrated, 3 already in this tote's shape, 0 failed/);
    assert.equal((await getRecord('broke')).metadata?.resourceVersion, before.metadata?.resourceVersion);
  });

  it('tote migrate policy turns 0.x flags into a policy the API server accepts', async () => {
    const { stdout } = await tote([
      'migrate',
      'policy',
      '--policy-name=from-v0',
      '--',
      '--max-image-size=2GB',
      '--backup-registry=backup.example.com:5000/tote',
      '--webhook-url',
      'https://hooks.example.com/t?token=secret',
      '--webhook-events=salvaged,failed',
      '--salvagerecord-ttl=168h',
      '--json-log',
    ]);
    assert.doesNotMatch(stdout, /token=secret/, 'the webhook URL goes into a Secret, not the output');
    assert.match(stdout, /^# - --webhook-url moves into a Secret/m);
    const [policy] = parseAllDocuments(stdout).map((d) => d.toJS() as { spec: Record<string, unknown> });
    await kubectlOk(['apply', '-f', '-'], JSON.stringify(policy));
    const applied = JSON.parse(await kubectlOk(['get', 'salvagepolicy', 'from-v0', '-o', 'json'])) as {
      spec: Record<string, unknown>;
    };
    // The CRD's defaults fill in the rest; these are the fields the flags set.
    assert.equal((applied.spec.limits as { maxImageSize: string }).maxImageSize, '2G');
    assert.equal((applied.spec.backup as { target: string }).target, 'backup.example.com:5000/tote');
    assert.equal(applied.spec.recordTTL, '168h');
    assert.deepEqual((applied.spec.notifications as { events: string[] }).events, ['Salvaged', 'Failed']);
  });
});
