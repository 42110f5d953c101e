// What the kubelet's Node.status.images tells about an image: which nodes list it and under which digest. The kubelet
// reports at most 50 images per node (its default nodeStatusMaxImages), so this is a hint; the agents are the truth.
// Pure.
import type { V1Node } from '@kubernetes/client-node';
import { parseReference } from '../../registry/reference.ts';

/** Normalised form of an image name as the kubelet lists it (docker.io/library/nginx:1.25), or undefined. */
export function normalise(image: string): string | undefined {
  try {
    return parseReference(image).toString();
  } catch {
    return undefined;
  }
}

/** The repository (registry/path) of a reference, normalised; undefined when the reference is malformed. */
export function repositoryOf(image: string): string | undefined {
  try {
    return parseReference(image).name;
  } catch {
    return undefined;
  }
}

/**
 * The digest a tag points at according to some node's image list: an entry listing `repo:tag` also lists `repo@digest`
 * (the kubelet reports RepoTags and RepoDigests together). Undefined when no node knows the tag, or when nodes disagree
 * (a re-pushed tag): guessing would move the wrong image.
 */
export function digestFromNodeImages(nodes: readonly V1Node[], image: string): string | undefined {
  const ref = safeParse(image);
  if (!ref) return undefined;
  if (ref.digest) return ref.digest;
  const wanted = ref.toString();
  const found = new Set<string>();
  for (const node of nodes) {
    for (const entry of node.status?.images ?? []) {
      const names = entry.names ?? [];
      if (!names.some((n) => normalise(n) === wanted)) continue;
      for (const n of names) {
        const digest = safeParse(n);
        if (digest?.digest && digest.name === ref.name) found.add(digest.digest);
      }
    }
  }
  return found.size === 1 ? [...found][0] : undefined;
}

/** Nodes whose image list names `repo@digest`: a hint of where to look, to be confirmed by their agents. */
export function nodesListingDigest(nodes: readonly V1Node[], repository: string, digest: string): string[] {
  const wanted = `${repository}@${digest}`;
  return nodes
    .filter((node) =>
      (node.status?.images ?? []).some((entry) => (entry.names ?? []).some((n) => normalise(n) === wanted)),
    )
    .map((node) => node.metadata?.name ?? '')
    .filter((name) => name !== '');
}

/** The node's platform as containerd names it (os/arch[/variant]), from its labels or nodeInfo. */
export function nodePlatform(node: V1Node): string {
  const labels = node.metadata?.labels ?? {};
  const os = labels['kubernetes.io/os'] ?? node.status?.nodeInfo?.operatingSystem ?? 'linux';
  const arch = labels['kubernetes.io/arch'] ?? node.status?.nodeInfo?.architecture ?? 'amd64';
  return `${os}/${arch}`;
}

function safeParse(image: string) {
  try {
    return parseReference(image);
  } catch {
    return undefined;
  }
}
