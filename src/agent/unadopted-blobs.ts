// Blob files the agent placed in containerd's content store (content-dir.ts) that containerd never adopted — the agent
// died, or the adopting call failed, between the rename and the commit — belong to no namespace and would stay on
// disk. Deciding ourselves which files are orphans would race with containerd committing the same digest for a pull
// (a file we judged unreferenced could be adopted a moment later). containerd's garbage collector decides it under its
// own content lock: it deletes every backend blob no namespace references, but sweeps the backend only in a collection
// that removed some content record. So tote gives it one: a throwaway blob held by a throwaway lease, deleted with a
// synchronous collection. Run when no import of this agent is between placing and adopting (at start).
import { createHash, randomUUID } from 'node:crypto';
import type { Containerd } from '../containerd/index.ts';

export async function collectUnadoptedBlobs(containerd: Containerd): Promise<void> {
  const id = `tote-sweep-${randomUUID()}`;
  const bytes = Buffer.from(`tote: a collection that sweeps containerd's content backend (${id})\n`);
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  await containerd.leases.create(id, new Date(Date.now() + 10 * 60_000));
  try {
    const writer = await containerd.content.openWriter(id, { total: bytes.length, expected: digest, lease: id });
    try {
      await writer.write(bytes);
      await writer.commit();
    } finally {
      writer.close();
    }
  } finally {
    await containerd.leases.delete(id, { sync: true });
  }
}
