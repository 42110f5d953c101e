// Deterministic SalvageRecord names: one record per (image digest, target node), so that two controllers, a restart or
// a relist all arrive at the same object instead of duplicates. A create that hits AlreadyExists means "join it".
import { createHash } from 'node:crypto';

const maxNameLength = 253;
const digestPattern = /^sha256:([a-f0-9]{64})$/;

/** The name of the record for `digest` (or, while only a tag is known, for `imageRef`) on `node`. */
export function recordName(target: { digest?: string; imageRef: string; node: string }): string {
  const key = target.digest !== undefined ? digestKey(target.digest) : `ref-${shortHash(target.imageRef)}`;
  const node = sanitize(target.node);
  const name = `${key}-${node}`;
  if (name.length <= maxNameLength) return name;
  // Too long for a DNS subdomain: keep a readable prefix of the node and make it unique with a hash of the whole.
  const suffix = shortHash(target.node);
  return `${key}-${node.slice(0, maxNameLength - key.length - suffix.length - 2).replace(/[-.]+$/, '')}-${suffix}`;
}

/** First 12 hex characters of a sha256 digest: unique enough among the images of one node, short enough to read. */
function digestKey(digest: string): string {
  return digestLabelValue(digest).slice(0, 12);
}

const shortHash = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 10);

/** Node names are already DNS subdomains; lower-case and replace anything else to stay valid whatever we are given. */
const sanitize = (node: string) =>
  node
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '') || 'node';

/** Label values hold at most 63 characters: the digest's hex cut to fit, for list selectors. */
export function digestLabelValue(digest: string): string {
  const hex = digestPattern.exec(digest)?.[1];
  if (hex === undefined)
    throw new Error(`invalid digest ${JSON.stringify(digest)}: expected sha256: and 64 hex characters`);
  return hex.slice(0, 63);
}
