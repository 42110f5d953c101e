// The API server and tote must read byte quantities alike: a policy the API server admits but tote cannot parse would
// be accepted at `kubectl apply` and then fail on every reconcile. The CRD's pattern and CEL bound are checked here to be
// the very grammar src/api/quantity.ts parses with; the table checks the parser refuses what the bound refuses.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import type { CrdDocument, CrdSchema } from '../../../hack/generate/api-reference.ts';
import { byteQuantityLimit, byteQuantityPattern, parseQuantity } from '../../../src/api/quantity.ts';

const crd = parse(
  readFileSync(join(import.meta.dirname, '../../../crds/tote.dev_salvagepolicies.yaml'), 'utf8'),
) as CrdDocument;
const limits = crd.spec.versions[0]?.schema.openAPIV3Schema.properties?.spec?.properties?.limits?.properties ?? {};

describe('byte quantities: the CRD states the grammar tote parses', () => {
  for (const field of ['maxImageSize', 'bandwidthPerTransfer']) {
    it(`spec.limits.${field}: the same pattern, bounded below ${byteQuantityLimit}`, () => {
      const schema = limits[field] as CrdSchema & {
        pattern?: string;
        'x-kubernetes-validations'?: { rule: string }[];
      };
      assert.equal(schema.pattern, byteQuantityPattern);
      const rule = schema['x-kubernetes-validations']?.[0]?.rule ?? '';
      assert.match(rule, new RegExp(`isLessThan\\(quantity\\('${byteQuantityLimit}'\\)\\)`));
      assert.match(rule, new RegExp(`self < ${2 ** 53}`));
    });
  }

  it('what the pattern admits below the bound, the parser reads; what it refuses, the parser refuses', () => {
    const pattern = new RegExp(byteQuantityPattern);
    const admitted = ['1', '2Gi', '500M', '1.5G', '1e3', '1E6', '.5Ki', '+10', '7Pi', '9P'];
    const refused = ['100m', '500u', '3n', '1e-3', '-1', '2GB', 'Gi', ''];
    for (const q of admitted) {
      assert.ok(pattern.test(q), `pattern admits ${q}`);
      assert.ok(parseQuantity(q) > 0, `parser reads ${q}`);
    }
    for (const q of refused) {
      assert.ok(!pattern.test(q), `pattern refuses ${q}`);
      assert.throws(() => parseQuantity(q), `parser refuses ${q}`);
    }
    // At or over 8Pi the CEL bound refuses, and so does the parser (not an exact number of bytes any more).
    for (const q of ['9Ei', '1E', '8Ei', '10P']) assert.throws(() => parseQuantity(q), `parser refuses ${q}`);
  });
});
