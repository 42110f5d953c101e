// Pins against the kubelet's image GC: CRI skips an image whose record carries io.cri-containerd.pinned=pinned. tote
// pins the records of endangered images for a while (its own label says until when), renews the pin while the image
// stays endangered, and removes only pins it set: when the controller says the image is safe again, or when the pin
// lapses un-renewed (the image is no longer used, or no controller is there to renew it). A record someone else pinned
// is never touched.
//
// Concurrency: event-loop only. A pin and a sweep racing on one record both write the same labels or both remove them;
// containerd applies each update whole.
import type { Containerd, ImageRecord } from '../containerd/index.ts';
import { criPinnedLabel, criPinnedValue, totePinnedUntilLabel } from '../containerd/index.ts';

const pinFields = [`labels.${criPinnedLabel}`, `labels.${totePinnedUntilLabel}`];

/** Unix seconds until which tote's pin on these records holds; 0 when tote has not pinned them. */
export function pinnedUntil(records: readonly ImageRecord[]): number {
  let until = 0;
  for (const r of records) {
    const value = Number(r.labels[totePinnedUntilLabel] ?? '0');
    if (Number.isFinite(value) && value > until) until = value;
  }
  return until;
}

const pinnedByOthers = (r: ImageRecord) =>
  r.labels[criPinnedLabel] === criPinnedValue && r.labels[totePinnedUntilLabel] === undefined;

/**
 * Pins every record of `digest` until `untilSeconds` (unix seconds), or with 0 removes tote's pins from them. Returns
 * the names of the records changed.
 */
export async function pinImage(containerd: Containerd, digest: string, untilSeconds: number): Promise<string[]> {
  const records = await containerd.images.list([`target.digest==${digest}`]);
  return untilSeconds > 0 ? pin(containerd, records, untilSeconds) : unpin(containerd, records);
}

async function pin(containerd: Containerd, records: readonly ImageRecord[], until: number): Promise<string[]> {
  const changed: string[] = [];
  for (const r of records) {
    if (pinnedByOthers(r) || r.labels[totePinnedUntilLabel] === String(until)) continue;
    const labels = { ...r.labels, [criPinnedLabel]: criPinnedValue, [totePinnedUntilLabel]: String(until) };
    await containerd.images.update({ name: r.name, target: r.target, labels }, pinFields);
    changed.push(r.name);
  }
  return changed;
}

async function unpin(containerd: Containerd, records: readonly ImageRecord[]): Promise<string[]> {
  const changed: string[] = [];
  for (const r of records) {
    if (r.labels[totePinnedUntilLabel] === undefined) continue;
    // Fields named in the mask but absent from the labels are removed.
    const labels = Object.fromEntries(
      Object.entries(r.labels).filter(([k]) => k !== criPinnedLabel && k !== totePinnedUntilLabel),
    );
    await containerd.images.update({ name: r.name, target: r.target, labels }, pinFields);
    changed.push(r.name);
  }
  return changed;
}

/** Removes tote's pins that lapsed before `nowSeconds`; returns the records changed. */
export async function sweepLapsedPins(containerd: Containerd, nowSeconds: number): Promise<string[]> {
  const records = await containerd.images.list();
  const lapsed = records.filter((r) => {
    const until = r.labels[totePinnedUntilLabel];
    return until !== undefined && !(Number(until) > nowSeconds);
  });
  return unpin(containerd, lapsed);
}
