// Streams blob bytes through a hash without ever holding a whole blob: a reader that hands out exact-length slices of
// a source stream (for chunked uploads) and checks size and digest as bytes go by.
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import { ToteError } from '../api/errors.ts';

/** The hash algorithm named by a digest, as node:crypto calls it. */
export function hashFor(digest: string): Hash {
  const algorithm = digest.slice(0, digest.indexOf(':'));
  if (algorithm !== 'sha256' && algorithm !== 'sha384' && algorithm !== 'sha512') {
    throw new ToteError('terminal', 'InvalidDigest', `unsupported digest algorithm in ${digest}`);
  }
  return createHash(algorithm);
}

/** The digest of bytes in memory (manifests). */
export function digestOf(bytes: Uint8Array, algorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

/**
 * Reads a blob stream of announced size and digest in slices. Every byte passes through the hash once; the final
 * slice is held back until the digest has been checked, so a registry never receives a complete body whose digest is
 * wrong.
 */
export class VerifyingReader {
  readonly digest: string;
  readonly size: number;
  /** Bytes handed out so far. */
  position = 0;
  readonly #hash: Hash;
  readonly #iterator: AsyncIterator<Uint8Array>;
  #leftover: Uint8Array | undefined;
  readonly #onBytes: ((n: number) => void) | undefined;

  constructor(source: AsyncIterable<Uint8Array>, digest: string, size: number, onBytes?: (n: number) => void) {
    this.digest = digest;
    this.size = size;
    this.#hash = hashFor(digest);
    this.#iterator = source[Symbol.asyncIterator]();
    this.#onBytes = onBytes;
  }

  /** Yields exactly `length` bytes (the last slice of the blob only after its digest is verified). */
  async *slice(length: number): AsyncGenerator<Uint8Array> {
    const end = this.position + length;
    if (end > this.size) throw new RangeError('slice beyond the blob');
    let pending: Uint8Array | undefined;
    while (this.position < end) {
      const chunk = await this.#next(end - this.position);
      this.position += chunk.length;
      this.#hash.update(chunk);
      this.#onBytes?.(chunk.length);
      if (pending !== undefined) yield pending;
      pending = chunk;
    }
    if (end === this.size) await this.#finish();
    if (pending !== undefined) yield pending;
  }

  async #next(max: number): Promise<Uint8Array> {
    let chunk = this.#leftover;
    this.#leftover = undefined;
    if (chunk === undefined) {
      const step = await this.#iterator.next();
      if (step.done === true) {
        throw new ToteError(
          'integrity',
          'BlobTruncated',
          `blob ${this.digest}: source ended after ${this.position} of ${this.size} bytes`,
        );
      }
      chunk = step.value;
    }
    if (chunk.length > max) {
      this.#leftover = chunk.subarray(max);
      return chunk.subarray(0, max);
    }
    return chunk;
  }

  async #finish(): Promise<void> {
    if (this.#leftover !== undefined && this.#leftover.length > 0) throw this.#tooLong();
    for (;;) {
      const step = await this.#iterator.next();
      if (step.done === true) break;
      if (step.value.length > 0) throw this.#tooLong();
    }
    const actual = `${this.digest.slice(0, this.digest.indexOf(':'))}:${this.#hash.digest('hex')}`;
    if (actual !== this.digest) {
      throw new ToteError(
        'integrity',
        'BlobDigestMismatch',
        `blob ${this.digest}: source content has digest ${actual}`,
      );
    }
  }

  #tooLong(): ToteError {
    return new ToteError('integrity', 'BlobTooLong', `blob ${this.digest}: source has more than ${this.size} bytes`);
  }

  /** Stops reading the source early (on failure). */
  async close(): Promise<void> {
    await this.#iterator.return?.();
  }
}
