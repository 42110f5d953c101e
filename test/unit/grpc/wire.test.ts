import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { test } from 'node:test';
import { WriteAction, WriteContentRequest } from '../../../generated/proto/containerd/services/content/v1/content.ts';
import { ReadBlobResponse } from '../../../generated/proto/tote/agent/v1/agent.ts';
import { appendBytesField, limitBuffering } from '../../../src/grpc/wire.ts';

const empty = new Uint8Array(0);

test('a WriteContentRequest with its data appended decodes as the generated encoder’s', () => {
  for (const size of [0, 1, 127, 128, 300, 16_383, 16_384, 1 << 20, (1 << 20) + 7]) {
    const req = WriteContentRequest.fromPartial({
      action: size === 0 ? WriteAction.COMMIT : WriteAction.WRITE,
      ref: 'tote-import-sha256:abc',
      total: 5_000_000_000,
      expected: 'sha256:abc',
      offset: 4_294_967_296 + size,
      data: randomBytes(size),
      labels: size === 0 ? { 'containerd.io/gc.ref.content.config': 'sha256:def' } : {},
    });
    const fast = appendBytesField(WriteContentRequest.encode({ ...req, data: empty }).finish(), 6, req.data);
    const decoded = WriteContentRequest.decode(fast);
    assert.deepEqual({ ...decoded, data: Buffer.from(decoded.data) }, { ...req, data: Buffer.from(req.data) });
    assert.equal(fast.length, WriteContentRequest.encode(req).finish().length, `size ${size}`);
  }
});

test('a ReadBlobResponse with its data appended decodes as the generated encoder’s', () => {
  for (const [offset, size] of [
    [0, 0],
    [0, 1],
    [1 << 20, 1 << 20],
    [2 ** 40, 200],
  ] as const) {
    const data = randomBytes(size);
    const fast = appendBytesField(ReadBlobResponse.encode({ offset, data: empty }).finish(), 2, data);
    assert.deepEqual(fast, Buffer.from(ReadBlobResponse.encode({ offset, data }).finish()));
  }
});

test('limitBuffering bounds the messages an object-mode stream buffers', async () => {
  let produced = 0;
  const r = new Readable({
    objectMode: true,
    read() {
      this.push({ n: ++produced });
    },
  });
  limitBuffering(r, 'read', 2);
  r.read();
  await new Promise((resolve) => setImmediate(resolve));
  assert.ok(r.readableLength <= 2, `${r.readableLength} buffered`);

  const w = new Writable({ objectMode: true, write: () => undefined }); // never completes: everything queues
  limitBuffering(w, 'write', 2);
  assert.equal(w.write({}), true);
  assert.equal(w.write({}), false);
});
