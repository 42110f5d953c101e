// The CRDs on a real kube-apiserver: every sample is accepted, every broken object in test/fixtures/invalid is refused
// with a message naming its field, `kubectl explain` serves the descriptions, and the printer columns show.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ensureCluster, kubectl } from '../../support/cluster.ts';
import type { ClusterEnv } from '../../support/cluster.ts';

const root = join(import.meta.dirname, '../../..');
const fixtures = join(root, 'test/fixtures/invalid');
const samples = join(root, 'config/samples');

type Schema = { properties?: Record<string, Schema>; items?: Schema } & Record<string, unknown>;
const validationKeywords = ['pattern', 'enum', 'minimum', 'maximum', 'minLength', 'x-kubernetes-validations'];

/** `<Kind> <spec path>` of every field under spec that the CRDs constrain beyond its type. */
function validatedFields(): string[] {
  const fields: string[] = [];
  const walk = (kind: string, schema: Schema, path: string) => {
    for (const [name, child] of Object.entries(schema.properties ?? {})) {
      const at = `${path}.${name}`;
      if (validationKeywords.some((k) => k in child)) fields.push(`${kind} ${at}`);
      walk(kind, child, at);
      if (child.items) walk(kind, child.items, at);
    }
  };
  for (const file of readdirSync(join(root, 'crds')).filter((f) => f.endsWith('.yaml'))) {
    const crd = parseAllDocuments(readFileSync(join(root, 'crds', file), 'utf8'))[0]?.toJS() as {
      spec: { names: { kind: string }; versions: { schema: { openAPIV3Schema: Schema } }[] };
    };
    const spec = crd.spec.versions[0]?.schema.openAPIV3Schema.properties?.spec;
    if (spec) walk(crd.spec.names.kind, spec, 'spec');
  }
  return fields.sort();
}

let cluster: ClusterEnv;
const namespace = `crd-validation-${process.pid}`;

/** Puts namespaced fixtures into this test's namespace, so runs never collide. */
function documents(file: string): Record<string, unknown>[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((d) => {
    const obj = d.toJS() as { kind: string; metadata: { namespace?: string } };
    if (obj.kind === 'SalvageRecord') obj.metadata.namespace = namespace;
    return obj;
  });
}

const apply = (obj: unknown, dryRun: boolean) =>
  kubectl(cluster, ['apply', '--validate=strict', ...(dryRun ? ['--dry-run=server'] : []), '-f', '-'], {
    input: JSON.stringify(obj),
  });

describe('CRDs on a real API server', () => {
  before(async () => {
    cluster = await ensureCluster();
    await kubectl(cluster, ['create', 'namespace', namespace]);
  });
  after(async () => {
    await kubectl(cluster, ['delete', 'namespace', namespace, '--wait=false']);
  });

  for (const file of readdirSync(samples).filter((f) => f.startsWith('salvage'))) {
    it(`accepts the sample ${file}`, async () => {
      for (const obj of documents(join(samples, file))) {
        const result = await apply(obj, true);
        assert.equal(result.code, 0, result.stderr);
      }
    });
  }

  const invalid = readdirSync(fixtures).filter((f) => f.endsWith('.yaml'));
  it('has a broken object for every field the CRDs validate', () => {
    const tried = new Set(
      invalid.map((file) => {
        const text = readFileSync(join(fixtures, file), 'utf8');
        const kind = /^kind: (\S+)/m.exec(text)?.[1] ?? '';
        return `${kind} ${(/^# expect-field: (\S+)/m.exec(text)?.[1] ?? '').replace(/\[\d+\]/g, '')}`;
      }),
    );
    const untried = validatedFields().filter((field) => !tried.has(field));
    assert.deepEqual(untried, [], 'fields whose validation no fixture tries');
  });

  for (const file of invalid) {
    const text = readFileSync(join(fixtures, file), 'utf8');
    const field = /^# expect-field: (\S+)/m.exec(text)?.[1];
    it(`refuses ${file}, naming ${field}`, async () => {
      assert.ok(field, 'fixture lacks an expect-field header');
      const docs = documents(join(fixtures, file));
      // Every document but the last sets the stage (an update is checked against it) and must be accepted.
      for (const obj of docs.slice(0, -1)) {
        const setup = await apply(obj, false);
        assert.equal(setup.code, 0, setup.stderr);
      }
      const result = await apply(docs.at(-1), true);
      assert.notEqual(result.code, 0, `accepted: ${result.stdout}`);
      assert.ok(result.stderr.includes(field), `message does not name ${field}: ${result.stderr}`);
    });
  }

  it('serves the field descriptions to kubectl explain', async () => {
    const result = await kubectl(cluster, ['explain', 'salvagepolicy.spec.limits.maxImageSize']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /largest image/);
    const spec = await kubectl(cluster, ['explain', 'salvagerecord.spec']);
    assert.match(spec.stdout, /targetNode/);
  });

  it('shows the dashboard columns and answers to the short name and category', async () => {
    const sample = documents(join(samples, 'salvagerecord-manual.yaml'))[0];
    assert.equal((await apply(sample, false)).code, 0);
    const table = await kubectl(cluster, ['get', 'svr', '-n', namespace]);
    assert.match(table.stdout, /NAME\s+IMAGE\s+PURPOSE\s+PHASE\s+SOURCE\s+TARGET\s+SIZE\s+AGE/);
    assert.match(table.stdout, /manual-app-node-b/);
    const category = await kubectl(cluster, ['get', 'tote', '-n', namespace, '-o', 'name']);
    assert.match(category.stdout, /salvagerecord.tote.dev\/manual-app-node-b/);
    const policies = await kubectl(cluster, ['get', 'salvagepolicies']);
    assert.equal(policies.code, 0, policies.stderr);
  });
});
