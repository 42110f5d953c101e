// Go-style durations ("168h", "1h30m", "10s", "250ms", "1.5h"), the format the CRDs use and CEL's duration() accepts.

const units: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
// µ written as \u00b5 in the patterns: one non-ASCII character would make the whole bundled source a two-byte string
// (twice its size in the heap, hack/build.ts).
const durationPattern = /^(?:\d+(?:\.\d+)?(?:ns|us|\u00b5s|ms|s|m|h))+$/;
const partPattern = /(\d+(?:\.\d+)?)(ns|us|\u00b5s|ms|s|m|h)/g;

export class DurationError extends Error {
  constructor(input: string, why: string) {
    super(
      `invalid duration ${JSON.stringify(input)}: ${why}; use a number with a unit (h, m, s, ms), e.g. 168h or 1h30m`,
    );
    this.name = 'DurationError';
  }
}

/** Parses a Go duration string to milliseconds. "0" alone is accepted, as in Go. */
export function parseDuration(input: string): number {
  const text = input.trim();
  if (text === '0') return 0;
  if (text.startsWith('-')) throw new DurationError(input, 'must not be negative');
  if (!durationPattern.test(text)) throw new DurationError(input, 'not a duration');
  let ms = 0;
  for (const [, amount = '0', unit = 'ms'] of text.matchAll(partPattern)) ms += Number(amount) * (units[unit] ?? NaN);
  if (!Number.isFinite(ms)) throw new DurationError(input, 'too large');
  return ms;
}

/** Formats milliseconds as a short Go-style duration, e.g. 5_400_000 → "1h30m", 1500 → "1.5s". */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 1000) return `${ms}ms`;
  const hours = Math.floor(ms / 3_600_000);
  const minutes = Math.floor((ms % 3_600_000) / 60_000);
  const seconds = (ms % 60_000) / 1000;
  let out = '';
  if (hours > 0) out += `${hours}h`;
  if (minutes > 0) out += `${minutes}m`;
  if (seconds > 0) out += `${Number.isInteger(seconds) ? seconds : seconds.toFixed(3).replace(/0+$/, '')}s`;
  return out;
}
