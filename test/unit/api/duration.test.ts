import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DurationError, formatDuration, parseDuration } from '../../../src/api/duration.ts';

describe('parseDuration', () => {
  const cases: [string, number][] = [
    ['168h', 168 * 3_600_000],
    ['1h30m', 5_400_000],
    ['10s', 10_000],
    ['250ms', 250],
    ['1.5h', 5_400_000],
    ['2m3s', 123_000],
    ['1500us', 1.5],
    ['0', 0],
    ['0s', 0],
  ];
  for (const [input, ms] of cases) it(`parses ${input}`, () => assert.equal(parseDuration(input), ms));

  const bad: [string, RegExp][] = [
    ['-1h', /must not be negative/],
    ['7d', /not a duration/],
    ['10', /not a duration/],
    ['h', /not a duration/],
    ['', /not a duration/],
    ['1 h', /not a duration/],
  ];
  for (const [input, why] of bad) {
    it(`refuses ${JSON.stringify(input)}`, () => {
      assert.throws(
        () => parseDuration(input),
        (err: unknown) => err instanceof DurationError && why.test(err.message),
      );
    });
  }
});

describe('formatDuration', () => {
  const cases: [number, string][] = [
    [0, '0s'],
    [250, '250ms'],
    [1500, '1.5s'],
    [5_400_000, '1h30m'],
    [604_800_000, '168h'],
  ];
  for (const [ms, text] of cases) {
    it(`formats ${ms} as ${text} and parses back`, () => {
      assert.equal(formatDuration(ms), text);
      assert.equal(parseDuration(text), ms);
    });
  }
});
