#!/usr/bin/env bash
# Builds containerd 2.x from the Go module proxy into a cache outside git, so the agent's adapter conformance suite and
# node-to-node tests can run against both API generations (Debian ships 1.6):
#   ${TOTE_CACHE:-$HOME/.cache/tote}/bin/containerd-<version>/{containerd,containerd-shim-runc-v2,ctr}
# The shim and ctr come from the same version: Debian's 1.6 shim cannot start containers for a 2.x daemon.
# A warm cache returns at once without invoking Go. Prints the binary path on stdout; progress goes to stderr.
# Static (CGO_ENABLED=0): the cgo-only plugins (btrfs, devmapper) drop out, which the tests do not need.
set -euo pipefail

CONTAINERD_VERSION="${CONTAINERD_V2_VERSION:-v2.4.2}"

cache="${TOTE_CACHE:-$HOME/.cache/tote}"
bindir="$cache/bin/containerd-$CONTAINERD_VERSION"
binaries=(containerd containerd-shim-runc-v2 ctr)
complete=true
for b in "${binaries[@]}"; do [[ -x "$bindir/$b" ]] || complete=false; done
if $complete; then
  echo "$bindir/containerd"
  exit 0
fi

log() { echo "containerd/build.sh: $*" >&2; }
source "$(dirname "${BASH_SOURCE[0]}")/../go-env.sh"
export GOFLAGS="-buildvcs=false"
stage="$(mktemp -d "$cache/bin/.stage-containerd.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

start=$(date +%s)
log "building containerd $CONTAINERD_VERSION into $bindir (nice 19: the machine is shared)"
ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
GOBIN="$stage" nice -n 19 go install -trimpath -tags "no_btrfs no_devmapper no_zfs" -ldflags "$ldflags" \
  "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
  "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
  "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
mkdir -p "$bindir"
for b in "${binaries[@]}"; do mv "$stage/$b" "$bindir/$b"; done
log "done in $(( $(date +%s) - start ))s"
echo "$bindir/containerd"
