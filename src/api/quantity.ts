// Kubernetes resource quantities ("2Gi", "500M", "1.5G", "1e3", 1024) to bytes, and bytes back to a short human string.
// Only what tote's API uses: non-negative byte amounts. Milli and smaller suffixes and negative exponents are refused,
// since a fraction of a byte is meaningless for an image size or a bandwidth.
//
// The grammar is the one the CRD states (crds/tote.dev_salvagepolicies.yaml, `pattern` and the CEL bound of each byte
// quantity): test/unit/crds checks they are the same text, so the API server admits exactly what tote can read.

/** A byte quantity, as the CRD's `pattern` says it (RE2 and ECMAScript read it alike). */
export const byteQuantityPattern = '^\\+?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([KMGTPE]i|[kMGTPE]|[eE]\\+?[0-9]+)?$';
/** Quantities must stay below this (2^53 bytes): every byte count tote handles is an exact JavaScript number. */
export const byteQuantityLimit = '8Pi';

const binary: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
const decimal: Record<string, number> = { k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };
const quantityPattern = new RegExp(byteQuantityPattern);

export class QuantityError extends Error {
  constructor(input: string, why: string) {
    super(`invalid quantity ${JSON.stringify(input)}: ${why}; use a number of bytes or a suffix, e.g. 2Gi or 500M`);
    this.name = 'QuantityError';
  }
}

/** Parses a quantity to a whole number of bytes (rounded up, as Kubernetes does). */
export function parseQuantity(value: string | number): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new QuantityError(String(value), 'must be a non-negative number');
    return Math.ceil(value);
  }
  const input = value.trim();
  const match = quantityPattern.exec(input);
  if (!match) {
    if (input.startsWith('-')) throw new QuantityError(value, 'must not be negative');
    throw new QuantityError(value, 'not a quantity');
  }
  const [, number = '', , suffix = ''] = match;
  const multiplier = binary[suffix] ?? decimal[suffix] ?? (suffix === '' ? 1 : 10 ** Number(suffix.slice(1)));
  const bytes = Number(number) * multiplier;
  if (!Number.isFinite(bytes) || bytes > Number.MAX_SAFE_INTEGER) throw new QuantityError(value, 'too large');
  return Math.ceil(bytes);
}

/** Formats bytes with binary units and one decimal, e.g. 1536 → "1.5KiB", 3 → "3B". */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes}B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let value = bytes;
  let unit = 'B';
  for (const next of units) {
    if (value < 1024) break;
    value /= 1024;
    unit = next;
  }
  const rounded = Math.round(value * 10) / 10;
  return `${Number.isInteger(rounded) ? rounded.toFixed(0) : rounded.toFixed(1)}${unit}`;
}
