import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { digestLabelValue, recordName } from '../../../src/api/names.ts';

const digest = `sha256:${'ab12'.repeat(16)}`;
const other = `sha256:${'cd34'.repeat(16)}`;
const dns1123Subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

describe('recordName', () => {
  const cases: { name: string; input: Parameters<typeof recordName>[0]; expected?: string }[] = [
    {
      name: 'digest and node',
      input: { digest, imageRef: 'r/app:1', node: 'node-b' },
      expected: 'ab12ab12ab12-node-b',
    },
    {
      name: 'node with dots',
      input: { digest, imageRef: 'r/app:1', node: 'ip-10-0-0-1.ec2.internal' },
      expected: 'ab12ab12ab12-ip-10-0-0-1.ec2.internal',
    },
    {
      name: 'odd characters are replaced',
      input: { digest, imageRef: 'r/app:1', node: 'Node_B' },
      expected: 'ab12ab12ab12-node-b',
    },
    { name: 'tag only', input: { imageRef: 'registry.example.com/app:1', node: 'node-a' } },
    { name: 'very long node', input: { digest, imageRef: 'x', node: `${'n'.repeat(300)}.example` } },
  ];
  for (const c of cases) {
    it(`is a valid, stable name for ${c.name}`, () => {
      const name = recordName(c.input);
      assert.match(name, dns1123Subdomain);
      assert.ok(name.length <= 253, `${name.length} characters`);
      assert.equal(recordName({ ...c.input }), name);
      if (c.expected) assert.equal(name, c.expected);
    });
  }

  it('differs per digest and per node, so every node needing an image gets its own record', () => {
    const names = new Set([
      recordName({ digest, imageRef: 'a', node: 'node-a' }),
      recordName({ digest, imageRef: 'a', node: 'node-b' }),
      recordName({ digest: other, imageRef: 'a', node: 'node-a' }),
      recordName({ imageRef: 'a:1', node: 'node-a' }),
      recordName({ imageRef: 'a:2', node: 'node-a' }),
    ]);
    assert.equal(names.size, 5);
  });

  it('is the same for pods naming the same digest differently', () => {
    assert.equal(
      recordName({ digest, imageRef: 'r/app:1', node: 'node-a' }),
      recordName({ digest, imageRef: `r/app@${digest}`, node: 'node-a' }),
    );
  });

  it('keeps long node names unique', () => {
    const base = 'n'.repeat(300);
    assert.notEqual(
      recordName({ digest, imageRef: 'x', node: `${base}-1` }),
      recordName({ digest, imageRef: 'x', node: `${base}-2` }),
    );
  });

  it('refuses a malformed digest', () => {
    assert.throws(() => recordName({ digest: 'sha256:xyz', imageRef: 'x', node: 'n' }), /invalid digest/);
  });
});

describe('digestLabelValue', () => {
  it('fits a label value', () => {
    const value = digestLabelValue(digest);
    assert.equal(value.length, 63);
    assert.ok(digest.includes(value));
  });
});
