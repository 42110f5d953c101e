// sendFileRange reuses three buffers: a buffer may go back into use only once the socket's write callback said the
// chunk was handed on. The sinks here look at each chunk only when they call back, as a socket does, so a buffer
// reused early shows up as bytes that differ from the file's.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { sendFileRange } from '../../../src/agent/file-sender.ts';
import { tempDir } from '../../support/temp-dirs.ts';

const sha = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

/** A sink that reads each chunk only when it calls back, a few milliseconds later (like a socket waiting for the peer). */
function lateReader(): { sink: Writable; received: () => Buffer } {
  const parts: Buffer[] = [];
  const sink = new Writable({
    highWaterMark: 16 << 20, // write() keeps answering true: only the callbacks hold the sender back
    write(chunk: Buffer, _encoding, callback) {
      // Long enough for the sender's next file read to land: a buffer reused before this callback is overwritten.
      setTimeout(() => {
        parts.push(Buffer.from(chunk)); // copied now, at callback time: what the socket would have sent
        callback();
      }, 3);
    },
  });
  return { sink, received: () => Buffer.concat(parts) };
}

function blobFile(bytes: number): { path: string; data: Buffer } {
  const data = randomBytes(bytes);
  const path = join(tempDir('tote-file-sender-'), 'blob');
  writeFileSync(path, data);
  return { path, data };
}

describe('sendFileRange', () => {
  it('sends the range byte for byte through reused buffers, counts it, and ends the sink', async () => {
    const { path, data } = blobFile(5 * (1 << 20) + 12345);
    const { sink, received } = lateReader();
    let counted = 0;
    const from = 777;
    await sendFileRange(await open(path), { from, to: data.length }, sink, new AbortController().signal, (n) => {
      counted += n;
    });
    assert.equal(received().length, data.length - from);
    assert.equal(sha(received()), sha(data.subarray(from)));
    assert.equal(counted, data.length - from);
    assert.ok(sink.writableFinished, 'the sink was ended');
  });

  it('rejects when the peer goes away mid-blob, and closes the file', async () => {
    const { path, data } = blobFile(8 << 20);
    let writes = 0;
    const sink = new Writable({
      write(_chunk, _encoding, callback) {
        if (++writes === 2) sink.destroy();
        else setImmediate(callback);
      },
    });
    const file = await open(path);
    await assert.rejects(
      sendFileRange(file, { from: 0, to: data.length }, sink, new AbortController().signal, () => undefined),
      /closed|destroyed/,
    );
    await assert.rejects(file.stat(), /closed|EBADF/, 'the file handle is closed');
  });

  it('a file shorter than announced is a transient failure, not a short blob sent as whole', async () => {
    const { path, data } = blobFile(1000);
    const { sink } = lateReader();
    await assert.rejects(
      sendFileRange(await open(path), { from: 0, to: data.length + 10 }, sink, new AbortController().signal, () => {}),
      /ended at 1000 of 1010 bytes/,
    );
  });
});
