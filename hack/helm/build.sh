#!/usr/bin/env bash
# Builds Helm from its upstream Go module (no Debian package ships it) into a cache outside git:
#   ${TOTE_CACHE:-$HOME/.cache/tote}/bin/helm-<version>/helm
# A warm cache returns at once without invoking Go. Prints the binary's path on stdout; progress goes to stderr.
set -euo pipefail

HELM_VERSION=v4.3.2

bindir="${TOTE_CACHE:-$HOME/.cache/tote}/bin/helm-$HELM_VERSION"
if [[ -x "$bindir/helm" ]]; then
  echo "$bindir/helm"
  exit 0
fi

log() { echo "helm/build.sh: $*" >&2; }
source "$(dirname "${BASH_SOURCE[0]}")/../go-env.sh"
stage="$(mktemp -d "$cache/bin/.stage-helm.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

start=$(date +%s)
log "building helm $HELM_VERSION into $bindir"
# Helm's module has no replace directives, so `go install module@version` builds it as released; the version string
# `helm version` prints is set the way Helm's own Makefile sets it.
GOFLAGS=-buildvcs=false GOBIN="$stage" go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
mkdir -p "$bindir"
mv -f "$stage/helm" "$bindir/helm"
log "done in $(($(date +%s) - start)) s"
echo "$bindir/helm"
