// Direct access to containerd's local content store on disk (`<root>/io.containerd.content.v1.content`), the fast data
// path of a transfer. Every byte of a transfer otherwise crosses containerd's gRPC content API twice (Read on the
// source, Write on the target), which measured ~6 CPU-seconds per GB in containerd alone (docs/agent.md): more than
// the rest of the transfer together.
//
// Reading: a blob is the file blobs/sha256/<hex>. Only digests containerd's metadata lists in our namespace are ever
// opened (the server checks Info first), and the target verifies every byte anyway.
//
// Writing: the blob is streamed into a staging file of ours beside the store (same filesystem), its size and sha256
// verified, fsynced, made read-only like containerd's own blobs and renamed into blobs/sha256/<hex> — atomically, so no
// reader ever sees a partial blob under a digest name. The caller then opens a containerd content Writer with the
// expected digest: under containerd's default "shared" content policy the metadata store finds the blob in its backend
// and commits it into the namespace (and the transfer's lease) without a byte sent — containerd answers
// AlreadyExists. If it does not (another content directory, the "isolated" policy), the caller streams the staged file
// through the API instead and stops using direct writes. containerd's garbage collection takes its content lock around
// the backend sweep and the Writer takes it while committing, so a blob collected between our rename and the commit is
// seen as absent by the Writer, never committed as a dangling record.
//
// Resume: the staging file is named by (blob, image) and kept when a transfer breaks — also across a restart of the
// agent — so the retry continues from its length. Files older than the transfer lease's lifetime are removed when the
// agent starts and periodically, as containerd's GC would remove an expired lease's ingests; blob files placed but
// never adopted are left to containerd's own collector (unadopted-blobs.ts).
//
// Concurrency: one transfer per image at a time (the server enforces it); a blob shared by two images being
// imported at once is staged once per image, and the second rename replaces an identical, verified file.
import { chmod, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

/** The conventional location on a node; the DaemonSet mounts it at the same path. */
export const defaultContentDir = '/var/lib/containerd/io.containerd.content.v1.content';

const stagingDirName = 'tote-staging';
const hexOf = (digest: string): string => {
  const m = /^sha256:([a-f0-9]{64})$/.exec(digest);
  if (!m) throw new Error(`not a sha256 digest: ${digest}`);
  return m[1]!;
};

/**
 * Errors of the disk rather than of the transfer: a directory mounted read-only or under SELinux labels the agent may not
 * write, blobs/ on another filesystem than the staging files (rename cannot cross), a full disk or quota. Writing
 * through containerd's content API instead may still work (containerd writes where its own labels and mounts allow).
 */
const diskErrorCodes: ReadonlySet<string> = new Set(['EACCES', 'EPERM', 'EROFS', 'EXDEV', 'ENOSPC', 'EDQUOT', 'EIO']);

/** The errno code of a disk error the direct path should give way on, or undefined for any other failure. */
export function diskErrorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && diskErrorCodes.has(code) ? code : undefined;
}

export class ContentDir {
  readonly root: string;
  /** Cleared after containerd did not adopt a placed blob, or the disk refused a write: the content API from then on. */
  #writable = true;
  readonly #onDisabled: ((reason: string) => void) | undefined;

  constructor(root: string, onDisabled?: (reason: string) => void) {
    this.root = root;
    this.#onDisabled = onDisabled;
  }

  /**
   * The store at `root` when that directory exists (containerd creates blobs/ with its first blob; whether this is
   * really containerd's store shows when it adopts the first placed blob), else undefined. Staging files older than
   * `staleAfterMs` are removed.
   */
  static async open(
    root: string,
    staleAfterMs: number,
    onDisabled?: (reason: string) => void,
  ): Promise<ContentDir | undefined> {
    try {
      if (!(await stat(root)).isDirectory()) return undefined;
    } catch {
      return undefined;
    }
    const dir = new ContentDir(root, onDisabled);
    await dir.#removeStale(staleAfterMs);
    return dir;
  }

  get writable(): boolean {
    return this.#writable;
  }

  /** After containerd failed to adopt a placed blob, or a disk error: the content API from now on, said once. */
  disableWrites(reason: string): void {
    if (!this.#writable) return;
    this.#writable = false;
    this.#onDisabled?.(reason);
  }

  blobPath(digest: string): string {
    return join(this.root, 'blobs', 'sha256', hexOf(digest));
  }

  /**
   * The blob file, opened, or undefined when it is not here with exactly `size` bytes (another content directory, or a
   * blob being collected): the caller falls back to the content API. The caller closes it.
   */
  async openBlob(digest: string, size: number): Promise<FileHandle | undefined> {
    let handle: FileHandle;
    try {
      handle = await open(this.blobPath(digest), 'r');
    } catch {
      return undefined;
    }
    try {
      if ((await handle.stat()).size === size) return handle;
    } catch {
      // unreadable: as if absent
    }
    await handle.close().catch(() => undefined);
    return undefined;
  }

  /** The staging file of blob `digest` for the import of image `imageDigest`. */
  stagingPath(digest: string, imageDigest: string): string {
    return join(this.root, stagingDirName, `${hexOf(digest)}.${hexOf(imageDigest).slice(0, 16)}`);
  }

  /** Opens (creating) a staging file for appending; its current length is where a resumed transfer continues. */
  async openStaging(path: string): Promise<{ handle: FileHandle; length: number }> {
    await mkdir(join(this.root, stagingDirName), { recursive: true, mode: 0o700 });
    const handle = await open(path, 'a+', 0o600);
    return { handle, length: (await handle.stat()).size };
  }

  /** Makes a verified, fsynced staging file the blob: read-only like containerd's own, then renamed into place. */
  async place(path: string, digest: string): Promise<void> {
    await chmod(path, 0o444);
    await mkdir(join(this.root, 'blobs', 'sha256'), { recursive: true, mode: 0o755 });
    await rename(path, this.blobPath(digest));
  }

  async discard(path: string): Promise<void> {
    await rm(path, { force: true });
  }

  /**
   * Removes staging files of transfers nobody resumed within `staleAfterMs`, now and then every `everyMs` (failed
   * transfers the controller gave up on leave theirs behind; an agent may run for months). Stop it with the result.
   */
  sweepStaging(staleAfterMs: number, everyMs: number): { stop(): void } {
    const timer = setInterval(() => void this.#removeStale(staleAfterMs).catch(() => undefined), everyMs);
    timer.unref();
    return { stop: () => clearInterval(timer) };
  }

  /** Staging files of transfers nobody resumed within `staleAfterMs`. */
  async #removeStale(staleAfterMs: number): Promise<void> {
    const dir = join(this.root, stagingDirName);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return;
    }
    const cutoff = Date.now() - staleAfterMs;
    for (const name of names) {
      const path = join(dir, name);
      const info = await stat(path).catch(() => undefined);
      if (info !== undefined && info.mtimeMs < cutoff) await rm(path, { force: true });
    }
  }
}
