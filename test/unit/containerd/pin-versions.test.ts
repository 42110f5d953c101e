import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { honoursPinLabel } from '../../../src/containerd/index.ts';

describe('honoursPinLabel: which containerd keeps a pin set outside CRI', () => {
  const cases: [string, boolean][] = [
    ['1.6.20~ds1', false],
    ['1.6.25', false],
    ['1.6.26', true],
    ['v1.6.38', true],
    ['1.7.9', false],
    ['v1.7.10', true],
    ['1.7.27-1', true],
    ['1.5.18', false],
    ['2.0.0', true],
    ['v2.1.4', true],
    ['', false],
    ['devel', false],
  ];
  for (const [version, honoured] of cases)
    it(`${version || '(empty)'} → ${honoured}`, () => {
      assert.equal(honoursPinLabel(version), honoured);
    });
});
