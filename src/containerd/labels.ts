// Label keys containerd and its CRI plugin give meaning to. Facts: docs/garbage-collection.md and the CRI image store.

/** On a lease: RFC 3339 time after which containerd's GC deletes the lease (and what only it holds). */
export const gcExpireLabel = 'containerd.io/gc.expire';
/** On a manifest: the config blob it references. */
export const gcRefConfigLabel = 'containerd.io/gc.ref.content.config';
/** On a manifest: its i-th layer (`…l.<i>`). */
export const gcRefLayerLabel = (i: number): string => `containerd.io/gc.ref.content.l.${i}`;
/** On an index: its i-th child manifest (`…m.<i>`). */
export const gcRefManifestLabel = (i: number): string => `containerd.io/gc.ref.content.m.${i}`;
/** On an index: a nested index or a child of unknown media type. */
export const gcRefContentLabel = (i: number): string => `containerd.io/gc.ref.content.${i}`;
/** CRI marks the records it manages (and only reads those). */
export const criManagedLabel = 'io.cri-containerd.image';
export const criManagedValue = 'managed';
/** Kubelet's image GC never removes an image with this label. */
export const criPinnedLabel = 'io.cri-containerd.pinned';
export const criPinnedValue = 'pinned';
/** The namespace CRI (and so the kubelet) uses. */
export const criNamespace = 'k8s.io';
/**
 * tote's own mark beside criPinnedLabel: unix seconds until which tote's pin holds. Only records carrying it had their
 * pin set by tote, so only those are ever unpinned by tote.
 */
export const totePinnedUntilLabel = 'tote.dev/pinned-until';

/**
 * Whether containerd `version` (as its Version API reports it, e.g. `v1.7.10`, `1.6.26-1`, `2.0.0`) keeps a pin label
 * set through the images API, outside CRI, when the kubelet's image GC runs: from 1.6.26, 1.7.10 and 2.0. Before, CRI's
 * image cache never sees such a label. Unparseable versions count as not honouring it.
 */
export function honoursPinLabel(version: string): boolean {
  const match = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version.trim());
  if (!match) return false;
  const [major, minor, patch] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (major !== 1) return major > 1;
  if (minor === 6) return patch >= 26;
  if (minor === 7) return patch >= 10;
  return minor > 7;
}
