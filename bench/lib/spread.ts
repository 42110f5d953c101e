// How one image spread over nodes, read from its SalvageRecords: each record copied it from status.sourceNode to
// spec.targetNode. The first holders are depth 0; a target is one deeper than its source, so the deepest target says
// how many rounds of copies the spread took (with one transfer per source a round at most doubles the holders), and
// the records served by a first holder say how many times the first copies were read.
import type { SalvageRecord } from '../../src/api/index.ts';

export interface Spread {
  /** Records whose source was one of the first holders: the image read from them this many times. */
  source_reads: number;
  /** Rounds of copies: the depth of the deepest target. */
  tree_depth: number;
  records_by_source: Record<string, number>;
}

export function spreadOf(all: SalvageRecord[], firstHolders: ReadonlySet<string>): Spread {
  // A record that copied nothing (its target already held the image) is no edge of the tree.
  const records = all.filter((r) => r.status?.sourceNode);
  const sourceOf = new Map(records.map((r) => [r.spec.targetNode, r.status?.sourceNode ?? '']));
  const depthOf = (node: string, seen: number): number => {
    const source = sourceOf.get(node);
    // A node the records do not lead back from (a first holder, or a cycle the records should never form) ends it.
    if (firstHolders.has(node) || source === undefined || seen > records.length) return 0;
    return 1 + depthOf(source, seen + 1);
  };
  const bySource: Record<string, number> = {};
  for (const r of records) {
    const source = r.status?.sourceNode ?? '';
    bySource[source] = (bySource[source] ?? 0) + 1;
  }
  return {
    source_reads: records.filter((r) => firstHolders.has(r.status?.sourceNode ?? '')).length,
    tree_depth: Math.max(0, ...records.map((r) => depthOf(r.spec.targetNode, 0))),
    records_by_source: bySource,
  };
}
