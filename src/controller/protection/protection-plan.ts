// Which images in use are endangered, and where their next copies go: a pure function of what the protection
// reconciler observed (pods' digests, holders, registry answers, nodes, existing records). It reads nothing and does
// nothing; the reconciler creates the records it names and sets the gauges. Its table of cases is
// test/unit/controller/protection-plan.test.ts.
//
// An image is endangered when no registry serves its digest and fewer than minCopies nodes that are staying hold a
// complete copy. A node is leaving when it is cordoned or tainted for removal (see leaving-nodes.ts) or no longer
// exists; with evacuateOnDrain its copy does not count (it is still a source: records locate over every holder).
// Copies already on their way (active records) count, so a plan made while a copy is in flight asks for no other.

/** A digest some pod in the policy's scope runs. */
export interface ImageInUse {
  digest: string;
  /** The reference the pods name it by: the record's imageRef, so the copy gets the names the kubelet looks up. */
  imageRef: string;
  /** Where its records go: the namespace of the first pod (by namespace, then name) that runs it. */
  namespace: string;
}

/** What the registry said about a digest: `unknown` until first asked (the image is then not judged yet). */
export type RegistryAnswer = 'serves' | 'gone' | 'unreachable' | 'unknown';

export interface DigestFacts {
  /** Nodes holding a complete copy (any platform the image has), as the agents answered. */
  holders: string[];
  registry: RegistryAnswer;
  /** By holder: unix seconds until which tote's pin holds there (absent or 0: tote has not pinned it). */
  pinnedUntil?: ReadonlyMap<string, number>;
}

export interface NodeFacts {
  name: string;
  /** os/arch as the node reports it. */
  platform: string;
  zone: string | undefined;
  /** Why the node is leaving the cluster (cordoned, a removal taint), or undefined while it stays. */
  leaving: string | undefined;
  agentAlive: boolean;
  /** DiskPressure=True: not a place for another copy. */
  diskPressure: boolean;
}

export interface ExistingRecord {
  digest: string;
  targetNode: string;
  /** Not in a final phase: the copy is on its way. */
  active: boolean;
}

export interface ProtectionInput {
  images: readonly ImageInUse[];
  /** By digest; a digest without facts has not been surveyed yet and is not judged. */
  facts: ReadonlyMap<string, DigestFacts>;
  nodes: readonly NodeFacts[];
  records: readonly ExistingRecord[];
  minCopies: number;
  evacuateOnDrain: boolean;
}

export type ProtectionReason = 'Endangered' | 'Evacuation';

export interface EndangeredImage {
  digest: string;
  imageRef: string;
  namespace: string;
  reason: ProtectionReason;
  holders: string[];
  /** Holders that are staying (their copies count). */
  safeHolders: string[];
  /** Holders that are leaving (still sources; their copies do not count with evacuateOnDrain). */
  leavingHolders: string[];
  /** Active records already bringing a copy to a staying node. */
  copiesOnTheWay: number;
  /** Nodes chosen for new copies now (may be fewer than needed when no node qualifies). */
  newTargets: string[];
  /** Copies still missing after newTargets: no eligible node is left. */
  shortBy: number;
}

export interface ProtectionPlan {
  endangered: EndangeredImage[];
  /** Digests in use that no registry serves and no node holds completely: nothing left to protect. */
  lost: string[];
}

export function planProtection(input: ProtectionInput): ProtectionPlan {
  const nodes = new Map(input.nodes.map((n) => [n.name, n]));
  const plan: ProtectionPlan = { endangered: [], lost: [] };
  for (const image of input.images) {
    const facts = input.facts.get(image.digest);
    if (!facts || facts.registry === 'serves' || facts.registry === 'unknown') continue;
    if (facts.holders.length === 0) {
      plan.lost.push(image.digest);
      continue;
    }
    const endangered = judge(image, facts, nodes, input);
    if (endangered) plan.endangered.push(endangered);
  }
  return plan;
}

function judge(
  image: ImageInUse,
  facts: DigestFacts,
  nodes: ReadonlyMap<string, NodeFacts>,
  input: ProtectionInput,
): EndangeredImage | undefined {
  const staying = (name: string) => {
    const node = nodes.get(name);
    return node !== undefined && (node.leaving === undefined || !input.evacuateOnDrain);
  };
  const holders = [...facts.holders].sort();
  const safeHolders = holders.filter(staying);
  const leavingHolders = holders.filter((h) => !staying(h));
  const records = input.records.filter((r) => r.digest === image.digest);
  const onTheWay = records.filter((r) => r.active && !holders.includes(r.targetNode) && staying(r.targetNode));
  const copies = safeHolders.length + onTheWay.length;
  if (safeHolders.length >= input.minCopies) return undefined;
  const needed = Math.max(0, input.minCopies - copies);
  const newTargets = chooseTargets(
    needed,
    eligibleTargets(holders, records, nodes, input),
    zoneCounts([...safeHolders, ...onTheWay.map((r) => r.targetNode)], nodes),
  );
  return {
    digest: image.digest,
    imageRef: image.imageRef,
    namespace: image.namespace,
    // A leaving holder makes this a race against the drain: its records go ahead of every other transfer.
    reason: leavingHolders.length > 0 ? 'Evacuation' : 'Endangered',
    holders,
    safeHolders,
    leavingHolders,
    copiesOnTheWay: onTheWay.length,
    newTargets,
    shortBy: needed - newTargets.length,
  };
}

/**
 * Staying nodes with a live agent, no disk pressure, the platform of a holder, no copy and no record for this digest
 * yet. A node whose record for the digest finished without leaving a copy is not asked again while that record lives:
 * asking it over and over would not change the answer (its TTL frees it).
 */
function eligibleTargets(
  holders: readonly string[],
  records: readonly ExistingRecord[],
  nodes: ReadonlyMap<string, NodeFacts>,
  input: ProtectionInput,
): NodeFacts[] {
  const platforms = new Set(holders.flatMap((h) => (nodes.get(h) ? [osArch(nodes.get(h)?.platform ?? '')] : [])));
  const taken = new Set([...holders, ...records.map((r) => r.targetNode)]);
  return input.nodes.filter(
    (n) =>
      n.leaving === undefined &&
      n.agentAlive &&
      !n.diskPressure &&
      !taken.has(n.name) &&
      (platforms.size === 0 || platforms.has(osArch(n.platform))),
  );
}

const osArch = (platform: string) => platform.split('/').slice(0, 2).join('/');

function zoneCounts(copies: readonly string[], nodes: ReadonlyMap<string, NodeFacts>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const name of copies) {
    const zone = nodes.get(name)?.zone ?? '';
    counts.set(zone, (counts.get(zone) ?? 0) + 1);
  }
  return counts;
}

/** `count` nodes, each time from the zone holding the fewest copies so far (then by name): copies spread over zones. */
function chooseTargets(count: number, candidates: readonly NodeFacts[], zones: Map<string, number>): string[] {
  const left = [...candidates].sort((a, b) => a.name.localeCompare(b.name));
  const chosen: string[] = [];
  while (chosen.length < count && left.length > 0) {
    let best = 0;
    for (let i = 1; i < left.length; i++) {
      if ((zones.get(left[i]?.zone ?? '') ?? 0) < (zones.get(left[best]?.zone ?? '') ?? 0)) best = i;
    }
    const [node] = left.splice(best, 1);
    if (!node) break;
    chosen.push(node.name);
    zones.set(node.zone ?? '', (zones.get(node.zone ?? '') ?? 0) + 1);
  }
  return chosen;
}

/** Pin (or renew the pin of) `digest` on `node`, or remove tote's pin there. */
export interface PinChange {
  node: string;
  digest: string;
  pin: boolean;
}

/**
 * Pins for the images in use: every complete copy of an image no registry serves is pinned (the copies tote makes
 * included), renewed once less than half of `pinTtlSeconds` is left; tote's pins come off at once when the registry
 * serves the digest again. A pin on an image no longer in use is not renewed and lapses on the node (the agent removes
 * it): no survey sees that image any more to say so. Several policies may judge one digest; "the registry serves it"
 * is the only verdict they all share, so it is the only one that removes a pin.
 */
export function planPins(input: {
  images: readonly ImageInUse[];
  facts: ReadonlyMap<string, DigestFacts>;
  nowSeconds: number;
  pinTtlSeconds: number;
}): PinChange[] {
  const changes: PinChange[] = [];
  for (const { digest } of input.images) {
    const facts = input.facts.get(digest);
    if (!facts || facts.registry === 'unknown') continue;
    for (const node of facts.holders) {
      const until = facts.pinnedUntil?.get(node) ?? 0;
      if (facts.registry === 'serves') {
        if (until > 0) changes.push({ node, digest, pin: false });
      } else if (until - input.nowSeconds < input.pinTtlSeconds / 2) {
        changes.push({ node, digest, pin: true });
      }
    }
  }
  return changes;
}
