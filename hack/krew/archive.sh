#!/usr/bin/env bash
# Builds the archive config/krew/tote.yaml points to (kubectl-tote and chunks/: the bundle of `make build`;
# LICENSES.txt: the licences of the code bundled in it) and prints the manifest with its version and sha256 filled in.
#
# Usage: hack/krew/archive.sh [OUT_DIR]   (default dist/krew) → OUT_DIR/kubectl-tote-v<version>.tar.gz, OUT_DIR/tote.yaml
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=$(mkdir -p "${1:-$root/dist/krew}" && cd "${1:-$root/dist/krew}" && pwd)
version=v$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$root/package.json")
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

"$root/node_modules/.bin/node" "$root/hack/build.ts" --outdir "$stage/build" >&2
install -m 0755 "$stage/build/tote.mjs" "$stage/kubectl-tote"
# The entry imports each command's chunk from chunks/ beside it (hack/build.ts); maps stay out, licences are gathered.
mkdir "$stage/chunks"
cp "$stage/build/chunks/"*.mjs "$stage/chunks/"
cat "$stage/build/chunks/"*.LEGAL.txt >"$stage/LICENSES.txt"
archive=$out/kubectl-tote-$version.tar.gz
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$stage" -czf "$archive" kubectl-tote chunks LICENSES.txt
sha=$(sha256sum "$archive" | cut -d' ' -f1)
sed -e "s/VERSION/$version/g" -e "s/SHA256/$sha/" "$root/config/krew/tote.yaml" >"$out/tote.yaml"
echo "krew: $archive ($sha), manifest $out/tote.yaml" >&2
cat "$out/tote.yaml"
