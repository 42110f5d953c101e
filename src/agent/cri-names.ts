// The kubelet finds an image by asking CRI (ImageStatus of the pod's reference), and CRI answers from its own index of
// image records, which containerd's events keep up to date a moment after a record is written. An import is done only
// when CRI resolves every name it wrote to the imported image: blobs in the store under names the kubelet does not ask
// for run nothing (a pod naming `repo@digest` on a node holding only `repo:tag` pulls again).
import { setTimeout as sleep } from 'node:timers/promises';
import { isToteError, ToteError } from '../api/errors.ts';
import type { Containerd } from '../containerd/index.ts';

export interface CriCheckOptions {
  readonly signal: AbortSignal;
  /** How long CRI may take to learn of the new records (its event loop); containerd needs milliseconds. */
  readonly timeoutMs?: number;
  readonly pollMs?: number;
}

export type CriCheck = 'resolved' | 'no-cri';

/**
 * Waits until CRI resolves each of `names` to the image whose config is `configDigest` (CRI's image id). Resolves
 * `no-cri` when containerd runs without its CRI plugin (no kubelet uses such a node); throws a transient
 * `NameNotResolved` naming the first name CRI still does not resolve when the time is up, so the record retries and is
 * never reported done.
 */
export async function awaitCriNames(
  containerd: Containerd,
  names: readonly string[],
  configDigest: string,
  options: CriCheckOptions,
): Promise<CriCheck> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  let pending = [...names];
  for (;;) {
    const still: string[] = [];
    for (const name of pending) {
      let id: string | undefined;
      try {
        id = await containerd.cri.imageId(name, { signal: options.signal, timeoutMs: 5_000 });
      } catch (err) {
        if (isToteError(err) && err.reason === 'ContainerdUnimplemented') return 'no-cri';
        throw err;
      }
      if (id !== configDigest) still.push(name);
    }
    if (still.length === 0) return 'resolved';
    if (Date.now() >= deadline) {
      throw new ToteError(
        'transient',
        'NameNotResolved',
        `the kubelet's lookup (CRI ImageStatus) does not resolve ${still[0]} to ${configDigest} after the import`,
      );
    }
    pending = still;
    await sleep(options.pollMs ?? 50, undefined, { signal: options.signal });
  }
}
