// Puts test images (built by test/support/images.ts) into a real containerd, the way a CRI pull leaves them: blobs
// written under a lease with the GC labels, then the tag, repo@digest and sha256:<config> records labelled managed,
// then the lease removed. Also a layer carrying `/true` (a 129-byte static x86-64 ELF that exits 0), so a real container
// can start from a test image.
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import type { Containerd } from '../../src/containerd/index.ts';
import {
  criManagedLabel,
  criManagedValue,
  gcRefConfigLabel,
  gcRefLayerLabel,
  gcRefManifestLabel,
} from '../../src/containerd/index.ts';
import { MediaTypes } from './images.ts';
import type { Blob, Layer, Platform, TestImage } from './images.ts';

export const sha256 = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export const hostPlatform = (): Platform => ({
  os: 'linux',
  architecture: process.arch === 'x64' ? 'amd64' : process.arch === 'ia32' ? '386' : process.arch,
});

/** A static x86-64 Linux ELF whose only instructions are exit(0). */
export function trueBinary(): Buffer {
  const code = Buffer.from([0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05]); // mov eax,60; xor edi,edi; syscall
  const b = Buffer.alloc(120 + code.length);
  b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0], 0); // ELF64, little endian, System V
  b.writeUInt16LE(2, 16); // ET_EXEC
  b.writeUInt16LE(0x3e, 18); // x86-64
  b.writeUInt32LE(1, 20);
  b.writeBigUInt64LE(0x400078n, 24); // entry: the code right after the headers
  b.writeBigUInt64LE(64n, 32); // program header offset
  b.writeUInt16LE(64, 52);
  b.writeUInt16LE(56, 54);
  b.writeUInt16LE(1, 56);
  b.writeUInt32LE(1, 64); // PT_LOAD
  b.writeUInt32LE(5, 68); // R+X
  b.writeBigUInt64LE(0x400000n, 80);
  b.writeBigUInt64LE(0x400000n, 88);
  b.writeBigUInt64LE(BigInt(b.length), 96);
  b.writeBigUInt64LE(BigInt(b.length), 104);
  b.writeBigUInt64LE(0x1000n, 112);
  code.copy(b, 120);
  return b;
}

/** A gzip'd layer holding the executable `/true`; pass it as `base` to buildImage. */
export function trueLayer(): Layer {
  const data = trueBinary();
  const header = Buffer.alloc(512);
  const octal = (n: number, length: number) => n.toString(8).padStart(length - 1, '0') + '\0';
  header.write('true', 0, 100, 'ascii');
  header.write(octal(0o755, 8), 100, 8, 'ascii');
  header.write(octal(0, 8), 108, 8, 'ascii');
  header.write(octal(0, 8), 116, 8, 'ascii');
  header.write(octal(data.length, 12), 124, 12, 'ascii');
  header.write(octal(0, 12), 136, 12, 'ascii');
  header.fill(' ', 148, 156);
  header.write('0', 156, 1, 'ascii');
  header.write('ustar\0' + '00', 257, 8, 'ascii');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(octal(sum, 7) + ' ', 148, 8, 'ascii');
  const tar = Buffer.concat([header, data, Buffer.alloc((512 - (data.length % 512)) % 512), Buffer.alloc(1024)]);
  const gz = gzipSync(tar, { level: 1 });
  return { mediaType: MediaTypes.ociLayer, digest: sha256(gz), size: gz.length, data: gz, diffID: sha256(tar) };
}

export interface SeedOptions {
  /** Normalised tag to record, e.g. `registry.test/app:1`. */
  readonly name: string;
  /** Blobs to leave out of the content store (simulates discard_unpacked_layers or loss). */
  readonly omit?: ReadonlySet<string>;
  /** Only these platforms' manifests, configs and layers are written (the index always is). Default: all. */
  readonly platforms?: readonly Platform[];
  /** Create no image record (blobs only, held by `lease`). */
  readonly blobsOnly?: boolean;
  /** Keep the blobs under this (existing) lease instead of a temporary one. */
  readonly lease?: string;
}

const samePlatform = (a: Platform, b: Platform) =>
  a.os === b.os && a.architecture === b.architecture && (a.variant ?? '') === (b.variant ?? '');

/** Writes `image` into containerd as a CRI pull leaves it (see the module comment). */
export async function seedImage(containerd: Containerd, image: TestImage, options: SeedOptions): Promise<void> {
  const omit = options.omit ?? new Set<string>();
  const wanted = image.platforms.filter(
    (i) => options.platforms === undefined || options.platforms.some((p) => samePlatform(p, i.platform)),
  );
  const lease = options.lease ?? `seed-${image.target.digest.slice(7, 27)}-${process.hrtime.bigint()}`;
  if (options.lease === undefined) await containerd.leases.create(lease, new Date(Date.now() + 600_000));
  try {
    const write = async (blob: Blob, labels: Record<string, string> = {}) => {
      if (omit.has(blob.digest)) return;
      try {
        const w = await containerd.content.openWriter(`seed-${blob.digest}`, {
          total: blob.size,
          expected: blob.digest,
          lease,
        });
        for (let off = w.offset; off < blob.size; off += 1 << 20)
          await w.write(blob.data.subarray(off, off + (1 << 20)));
        if ((await w.commit(labels)) === 'committed') return;
      } catch (err) {
        if ((err as { kind?: string }).kind !== 'already-exists') throw err;
      }
      await containerd.leases.addResource(lease, { type: 'content', id: blob.digest });
      if (Object.keys(labels).length > 0) await containerd.content.updateLabels(blob.digest, labels);
    };
    for (const i of wanted) {
      for (const l of i.layers) await write(l);
      await write(i.config);
      const labels: Record<string, string> = { [gcRefConfigLabel]: i.config.digest };
      i.layers.forEach((l, n) => (labels[gcRefLayerLabel(n)] = l.digest));
      await write(i.manifest, labels);
    }
    if (image.index) {
      const labels: Record<string, string> = {};
      image.platforms.forEach((i, n) => (labels[gcRefManifestLabel(n)] = i.manifest.digest));
      await write(image.index, labels);
    }
    if (options.blobsOnly) return;
    const target = { mediaType: image.target.mediaType, digest: image.target.digest, size: image.target.size };
    const repo = options.name.replace(/:[^:/]+$/, '');
    const hostImage = wanted.find((i) => samePlatform(i.platform, hostPlatform())) ?? wanted[0];
    const names = [options.name, `${repo}@${image.target.digest}`, ...(hostImage ? [hostImage.config.digest] : [])];
    for (const name of names) {
      await containerd.images.delete(name);
      await containerd.images.create({ name, target, labels: { [criManagedLabel]: criManagedValue } });
    }
  } finally {
    if (options.lease === undefined) await containerd.leases.delete(lease);
  }
}
