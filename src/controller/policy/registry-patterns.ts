// The registry patterns of a SalvagePolicy: globs over the normalised repository name (`registry/path`), where `*`
// stays within one path segment and `**` crosses segments. Pure.

const cache = new Map<string, RegExp>();

export function patternToRegExp(pattern: string): RegExp {
  const cached = cache.get(pattern);
  if (cached) return cached;
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern.charAt(i);
    if (ch === '*' && pattern.charAt(i + 1) === '*') {
      // `a/**` also matches `a` itself, as users expect from "everything under a".
      if (pattern.charAt(i - 1) === '/' && i + 2 === pattern.length) source = `${source.slice(0, -1)}(?:/.*)?`;
      else source += '.*';
      i++;
    } else if (ch === '*') {
      source += '[^/]*';
    } else {
      source += ch.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
    }
  }
  const regexp = new RegExp(`^${source}$`);
  cache.set(pattern, regexp);
  return regexp;
}

/** True when `repository` (normalised, e.g. docker.io/library/nginx) matches one of the patterns, or none is given. */
export function matchesRegistries(patterns: readonly string[] | undefined, repository: string): boolean {
  if (!patterns || patterns.length === 0) return true;
  return patterns.some((p) => patternToRegExp(p).test(repository));
}
