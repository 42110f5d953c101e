// Sends part of a blob file to a peer's socket through a few reused buffers. A read stream allocates a fresh 1 MiB
// buffer for every read; at a gigabyte that is a thousand short-lived external allocations, and V8 answers the
// external-memory growth with collections: a CPU profile of the source agent put 1.0 of its 1.8 CPU-seconds per GiB
// in the garbage collector (docs/benchmarks.md, "Transfer"). The source is often a node running production work, so
// its share is the one to keep small.
//
// A buffer is reused only after the socket's write callback: the stream contract that the chunk has been handed on
// (for TLS, encrypted). `buffers` of them bound what is read ahead of the socket; backpressure ('drain') bounds what
// waits in the socket's queue.
import type { FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { ToteError } from '../api/errors.ts';

const chunkBytes = 1 << 20;
const buffers = 3;

/**
 * Writes bytes [from, to) of `file` to `out`, then ends `out`; `onSent` counts each chunk as it is written. Closes
 * the file in every case. Rejects when `out` closes or fails first, or when `signal` aborts.
 */
export async function sendFileRange(
  file: FileHandle,
  range: { from: number; to: number },
  out: Writable,
  signal: AbortSignal,
  onSent: (bytes: number) => void,
): Promise<void> {
  const pool = new BufferPool(buffers, chunkBytes);
  const closed = outClosed(out);
  try {
    let position = range.from;
    while (position < range.to) {
      signal.throwIfAborted();
      const buffer = await Promise.race([pool.take(), closed.promise]);
      const { bytesRead } = await file.read(buffer, 0, Math.min(buffer.length, range.to - position), position);
      if (bytesRead === 0)
        throw new ToteError('transient', 'BlobFileShort', `the blob file ended at ${position} of ${range.to} bytes`);
      position += bytesRead;
      const flowing = out.write(buffer.subarray(0, bytesRead), (err) => {
        if (err) closed.fail(err);
        pool.give(buffer);
      });
      onSent(bytesRead);
      if (!flowing) await Promise.race([new Promise((resolve) => out.once('drain', resolve)), closed.promise]);
    }
    await new Promise<void>((resolve, reject) => {
      out.end(() => resolve());
      void closed.promise.catch(reject);
    });
  } finally {
    closed.stop();
    await file.close().catch(() => undefined);
  }
}

/** Fixed buffers handed out one at a time; take() waits while all are out. */
class BufferPool {
  readonly #free: Buffer[];
  readonly #waiting: ((buffer: Buffer) => void)[] = [];

  constructor(count: number, size: number) {
    this.#free = Array.from({ length: count }, () => Buffer.allocUnsafeSlow(size));
  }

  take(): Promise<Buffer> {
    const buffer = this.#free.pop();
    return buffer ? Promise.resolve(buffer) : new Promise((resolve) => this.#waiting.push(resolve));
  }

  give(buffer: Buffer): void {
    const next = this.#waiting.shift();
    if (next) next(buffer);
    else this.#free.push(buffer);
  }
}

/** A promise that rejects once `out` closes before it finished, or fails; `stop` detaches it. */
function outClosed(out: Writable): { promise: Promise<never>; fail: (err: Error) => void; stop: () => void } {
  const { promise, reject: fail } = Promise.withResolvers<never>();
  promise.catch(() => undefined); // observed by the races above; never an unhandled rejection
  const onClose = () => {
    if (!out.writableFinished) fail(new ToteError('transient', 'PeerGone', 'the peer closed the connection'));
  };
  out.on('close', onClose);
  out.on('error', fail);
  return {
    promise,
    fail,
    stop: () => {
      out.off('close', onClose);
      out.off('error', fail);
    },
  };
}
