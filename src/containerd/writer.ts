// A content ingest over containerd's bidirectional Content.Write stream.
//
// Concurrency: containerd answers every request on the stream, in order. The writer keeps up to `window` WRITE
// requests in flight (so the socket never idles waiting for an acknowledgement) and matches answers to requests by
// order through a FIFO of pending promises. `write` waits when the window is full, which is the backpressure that
// keeps memory bounded to window × chunk size. One caller drives a writer at a time.
import { status as Status } from '@grpc/grpc-js';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { WriteAction } from '../../generated/proto/containerd/services/content/v1/content.ts';
import type {
  WriteContentRequest,
  WriteContentResponse,
} from '../../generated/proto/containerd/services/content/v1/content.ts';
import { ToteError } from '../api/errors.ts';
import { fromContainerdError } from './errors.ts';
import type { ContentWriter, WriterOptions } from './types.ts';

/** containerd reads ≤ 1 MiB at a time; larger chunks only cost memory. */
export const maxChunkBytes = 1024 * 1024;
const window = 4;

interface Pending {
  resolve(res: WriteContentResponse): void;
  reject(err: ToteError): void;
}

type WriteStream = ClientDuplexStream<WriteContentRequest, WriteContentResponse>;

export async function openContentWriter(
  call: WriteStream,
  ref: string,
  options: WriterOptions,
): Promise<ContentWriter> {
  const writer = new GrpcContentWriter(call, ref, options);
  try {
    await writer.stat();
  } catch (err) {
    writer.close();
    throw err;
  }
  return writer;
}

class GrpcContentWriter implements ContentWriter {
  readonly ref: string;
  readonly #call: WriteStream;
  readonly #total: number;
  readonly #expected: string;
  readonly #pending: Pending[] = [];
  readonly #inflight: Promise<unknown>[] = [];
  readonly #ended: Promise<void>;
  readonly #signal?: AbortSignal;
  #offset = 0;
  #failure?: ToteError;
  #committing = false;
  #closed = false;

  constructor(call: WriteStream, ref: string, options: WriterOptions) {
    this.ref = ref;
    this.#call = call;
    this.#total = options.total;
    this.#expected = options.expected;
    this.#signal = options.signal;
    this.#signal?.addEventListener('abort', this.#onAbort, { once: true });
    this.#ended = new Promise<void>((resolve) => {
      call.on('data', (res: WriteContentResponse) => {
        // containerd may repeat its last answer after a commit: nothing waits for it.
        this.#pending.shift()?.resolve(res);
      });
      call.on('error', (err: unknown) => {
        // At commit, FAILED_PRECONDITION means containerd found the size or digest wrong.
        const overrides = this.#committing ? { [Status.FAILED_PRECONDITION]: 'integrity' as const } : {};
        this.#fail(fromContainerdError(err, `content.Write ${ref}`, overrides));
        resolve();
      });
      call.on('end', () => {
        this.#fail(new ToteError('transient', 'StreamEnded', `containerd content.Write ${ref}: stream ended`));
        resolve();
      });
    });
  }

  get offset(): number {
    return this.#offset;
  }

  readonly #onAbort = (): void => {
    this.#fail(new ToteError('transient', 'Cancelled', `containerd content.Write ${this.ref}: cancelled`));
    this.#call.cancel();
  };

  #fail(err: ToteError): void {
    this.#failure ??= err;
    for (const p of this.#pending.splice(0)) p.reject(this.#failure);
  }

  #send(req: Partial<WriteContentRequest>): Promise<WriteContentResponse> {
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise<WriteContentResponse>((resolve, reject) => {
      this.#pending.push({ resolve, reject });
      this.#call.write({
        action: WriteAction.STAT,
        ref: this.ref,
        total: 0,
        expected: '',
        offset: 0,
        data: Buffer.alloc(0),
        labels: {},
        ...req,
      });
    });
  }

  /** Opens the ingest: containerd answers with the bytes it already holds (the resume offset). */
  async stat(): Promise<void> {
    const res = await this.#send({ action: WriteAction.STAT, total: this.#total, expected: this.#expected });
    this.#offset = res.offset;
    if (res.total !== 0 && res.total !== this.#total) {
      throw new ToteError(
        'terminal',
        'IngestTotalMismatch',
        `containerd ingest ${this.ref} expects ${res.total} bytes, not ${this.#total}: abort it first`,
      );
    }
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (chunk.length > 4 * maxChunkBytes) {
      throw new ToteError('terminal', 'ChunkTooLarge', `chunk of ${chunk.length} bytes; send ≤ ${maxChunkBytes}`);
    }
    if (this.#offset + chunk.length > this.#total) {
      throw new ToteError(
        'integrity',
        'BlobLongerThanAnnounced',
        `ingest ${this.ref}: ${this.#offset + chunk.length} bytes written, more than the announced ${this.#total}`,
      );
    }
    const answered = this.#send({
      action: WriteAction.WRITE,
      offset: this.#offset,
      data: Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength),
    });
    answered.catch(() => undefined); // surfaced through the window or the commit
    this.#offset += chunk.length;
    this.#inflight.push(answered);
    while (this.#inflight.length >= window) await this.#inflight.shift();
  }

  async flush(): Promise<void> {
    while (this.#inflight.length > 0) await this.#inflight.shift();
  }

  async commit(labels: Readonly<Record<string, string>> = {}): Promise<'committed' | 'exists'> {
    try {
      await this.flush();
      this.#committing = true;
      await this.#send({
        action: WriteAction.COMMIT,
        offset: this.#offset,
        total: this.#total,
        expected: this.#expected,
        labels: { ...labels },
      });
    } catch (err) {
      if (err instanceof ToteError && err.kind === 'already-exists') return 'exists';
      throw err;
    } finally {
      this.#closeStream();
    }
    await this.#ended;
    return 'committed';
  }

  #closeStream(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#call.end();
  }

  close(): void {
    if (this.#closed) return;
    this.#closeStream();
    this.#call.cancel();
  }
}
