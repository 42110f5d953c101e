// Wire helpers for the data path (blob bytes through containerd and between agents).
//
// Protobuf encoding of messages whose bulk is one `bytes` field (containerd's WriteContentRequest, tote's
// ReadBlobResponse) with a single copy of the payload.
//
// ts-proto's BinaryWriter copies a bytes field three times (into a buffer it grows by doubling and zero-fills, then
// `finish()`'s slice, then the generated serializer's `Buffer.from`); for 1 MiB chunks that was a large share of the
// agents' CPU and garbage. Protobuf parsers accept fields in any order (the encoding spec's "field order"), so the other
// fields are encoded by the generated code with the bytes field left empty (proto3 omits it) and the bytes field is
// appended after them: the same message, decoded identically by containerd (Go) and by ts-proto.

/** Appends field `fieldNumber` (wire type 2) holding `data` to the encoded message `rest`, which must not contain it. */
export function appendBytesField(rest: Uint8Array, fieldNumber: number, data: Uint8Array): Buffer {
  if (data.length === 0) return Buffer.from(rest.buffer, rest.byteOffset, rest.byteLength);
  const tag = varint((fieldNumber << 3) | 2);
  const len = varint(data.length);
  const out = Buffer.allocUnsafe(rest.length + tag.length + len.length + data.length);
  let at = 0;
  out.set(rest, at);
  at += rest.length;
  out.set(tag, at);
  at += tag.length;
  out.set(len, at);
  at += len.length;
  out.set(data, at);
  return out;
}

function varint(n: number): number[] {
  const bytes: number[] = [];
  while (n > 0x7f) {
    bytes.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  bytes.push(n);
  return bytes;
}

/** Node's internal stream state; present on every Readable / Writable, but not part of the typed API. */
interface StreamState {
  highWaterMark: number;
}

/**
 * Bounds how many messages a gRPC stream buffers ahead of its reader (read side) or behind its writer (write side).
 * grpc-js's streams are object-mode Node streams with the default high-water mark of 16 objects, and it keeps reading
 * from HTTP/2 until 16 messages wait: with 1 MiB chunks that is 16 MiB per blob stream, on top of the HTTP/2 window,
 * with nothing gained once the reader keeps up. grpc-js exposes no option, so the mark is set on the stream's state;
 * on a Node without that state this does nothing and the default applies.
 */
export function limitBuffering(stream: object, side: 'read' | 'write', messages: number): void {
  const key = side === 'read' ? '_readableState' : '_writableState';
  const state = (stream as Record<string, StreamState | undefined>)[key];
  if (state !== undefined && typeof state.highWaterMark === 'number') state.highWaterMark = messages;
}
