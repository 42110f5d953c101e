// Checks the hand-written CRDs for what the API server does not enforce but users rely on: a description on every
// field (kubectl explain, the API reference), types everywhere (structural schemas), bounded lists and strings, and
// printer columns that point at real fields. Whether the API server accepts and refuses objects is tested against a
// real kube-apiserver in test/integration/crds.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import type { CrdDocument, CrdSchema } from '../../../hack/generate/api-reference.ts';

const crdDir = join(import.meta.dirname, '../../../crds');
const crds = readdirSync(crdDir)
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => ({ file: f, crd: parse(readFileSync(join(crdDir, f), 'utf8')) as CrdDocument }));

function* fields(schema: CrdSchema, path: string): Generator<[string, CrdSchema]> {
  for (const [name, child] of Object.entries(schema.properties ?? {})) {
    yield [`${path}.${name}`, child];
    yield* fields(child, `${path}.${name}`);
    if (child.items) yield* fields(child.items, `${path}.${name}[]`);
  }
}

function schemaAt(schema: CrdSchema, jsonPath: string): CrdSchema | undefined {
  let node: CrdSchema | undefined = schema;
  for (const part of jsonPath.replace(/^\./, '').split('.')) {
    const name = part.replace(/\[.*\]$/, '');
    node = node?.properties?.[name];
    if (part.endsWith(']')) node = node?.items;
  }
  return node;
}

describe('CRD schemas', () => {
  it('are two: SalvagePolicy (cluster) and SalvageRecord (namespaced) in tote.dev', () => {
    const kinds = crds.map(({ crd }) => `${crd.spec.names.kind}/${crd.spec.scope}/${crd.spec.group}`).sort();
    assert.deepEqual(kinds, ['SalvagePolicy/Cluster/tote.dev', 'SalvageRecord/Namespaced/tote.dev']);
  });

  for (const { file, crd } of crds) {
    for (const version of crd.spec.versions) {
      const root = version.schema.openAPIV3Schema;
      describe(`${file} ${version.name}`, () => {
        it('describes every field', () => {
          // metadata is ObjectMeta: the API server forbids describing it in a CRD.
          const missing = [...fields(root, '')].filter(([p, s]) => !s.description && p !== '.metadata').map(([p]) => p);
          assert.deepEqual(missing, []);
        });

        it('gives every node a type (structural schema)', () => {
          const untyped = [...fields(root, '')]
            .filter(([, s]) => s.type === undefined && !s['x-kubernetes-int-or-string'])
            .map(([p]) => p);
          assert.deepEqual(untyped, []);
        });

        it('bounds every list and every free-form string in spec', () => {
          const unbounded = [...fields(root.properties?.spec ?? {}, 'spec')]
            .filter(
              ([, s]) =>
                (s.type === 'array' && s.maxItems === undefined) ||
                (s.type === 'string' && s.maxLength === undefined && s.enum === undefined && s.pattern === undefined),
            )
            .map(([p]) => p);
          assert.deepEqual(unbounded, []);
        });

        it('has printer columns that point at fields of the schema', () => {
          for (const column of version.additionalPrinterColumns ?? []) {
            if (column.jsonPath.startsWith('.metadata.')) continue;
            const path = column.jsonPath.replace(/\[\?\(.*?\)\]/, '[]');
            assert.ok(schemaAt(root, path), `${column.name}: ${column.jsonPath} is not in the schema`);
          }
        });

        it('has the status subresource, a short name and the tote category', () => {
          const raw = version as unknown as { subresources?: { status?: object } };
          assert.ok(raw.subresources?.status);
          assert.ok((crd.spec.names.shortNames ?? []).length > 0);
          assert.deepEqual(crd.spec.names.categories, ['tote']);
        });
      });
    }
  }
});
