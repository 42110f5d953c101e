import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatBytes, parseQuantity, QuantityError } from '../../../src/api/quantity.ts';

describe('parseQuantity', () => {
  const cases: [string | number, number][] = [
    ['2Gi', 2 * 2 ** 30],
    ['500M', 500e6],
    ['1.5Gi', 1.5 * 2 ** 30],
    ['1k', 1000],
    ['1Ki', 1024],
    ['0', 0],
    ['1e3', 1000],
    ['1E6', 1e6],
    ['.5Ki', 512],
    ['+10', 10],
    [1073741824, 1073741824],
    ['100', 100],
    ['1.1', 2],
  ];
  for (const [input, bytes] of cases) {
    it(`parses ${JSON.stringify(input)} as ${bytes} bytes`, () => assert.equal(parseQuantity(input), bytes));
  }

  const bad: [string | number, RegExp][] = [
    ['-1Gi', /must not be negative/],
    ['2GB', /not a quantity/],
    ['', /not a quantity/],
    ['Gi', /not a quantity/],
    ['10m', /not a quantity/],
    ['1e400', /too large/],
    [-5, /non-negative/],
    [Number.NaN, /non-negative/],
  ];
  for (const [input, why] of bad) {
    it(`refuses ${JSON.stringify(input)}`, () => {
      assert.throws(
        () => parseQuantity(input),
        (err: unknown) => err instanceof QuantityError && why.test(err.message),
      );
    });
  }
});

describe('formatBytes', () => {
  const cases: [number, string][] = [
    [0, '0B'],
    [1023, '1023B'],
    [1024, '1KiB'],
    [1536, '1.5KiB'],
    [2 * 2 ** 30, '2GiB'],
    [851_899_597, '812.4MiB'],
  ];
  for (const [bytes, text] of cases) it(`formats ${bytes} as ${text}`, () => assert.equal(formatBytes(bytes), text));
});
