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
