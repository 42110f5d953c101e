#!/usr/bin/env bash
# Builds the upstream control plane the local test cluster runs (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, and the kubelet and kube-proxy of real nodes from k8s.io/kubernetes; etcd from go.etcd.io/etcd/server/v3; kwok) into a cache outside git:
#   ${TOTE_CACHE:-$HOME/.cache/tote}/bin/k8s-<version>/
# The Go module and build caches live under the same root so a rebuild after a version bump is incremental.
# A warm cache (every binary present) returns at once without invoking Go.
# Prints the binary directory on stdout; progress goes to stderr.
set -euo pipefail

K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.8
KWOK_VERSION=v0.8.0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${TOTE_CACHE:-$HOME/.cache/tote}"
bindir="$cache/bin/k8s-$K8S_VERSION"
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy etcd kwok)

missing=()
for b in "${binaries[@]}"; do
  [[ -x "$bindir/$b" ]] || missing+=("$b")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "$bindir"
  exit 0
fi

log() { echo "build.sh: $*" >&2; }
source "$here/../go-env.sh"
export GOFLAGS="-mod=mod -buildvcs=false"
mkdir -p "$bindir"
stage="$(mktemp -d "$cache/bin/.stage.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

start=$(date +%s)
log "building ${missing[*]} into $bindir (Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION)"

# Only the missing Kubernetes commands are built (a cache from before the kubelet joined the list builds just that).
k8s_targets=()
for b in "${missing[@]}"; do
  case "$b" in
    kwok) ;;
    etcd) k8s_targets+=(go.etcd.io/etcd/server/v3) ;;
    *) k8s_targets+=("k8s.io/kubernetes/cmd/$b") ;;
  esac
done
if ((${#k8s_targets[@]} > 0)); then
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  (
    cd "$here"
    # One invocation, so the shared packages compile once and both cores stay busy.
    # A single target makes `go build -o DIR/` still write into DIR, named after the command.
    go build -trimpath -tags=selinux,notest,grpcnotrace -ldflags "$ldflags" -o "$stage/" "${k8s_targets[@]}"
  )
  # go names a module's binary after its path without the major-version suffix: go.etcd.io/etcd/server/v3 → server.
  if [[ -x $stage/server ]]; then mv "$stage/server" "$stage/etcd"; fi
fi

if [[ " ${missing[*]} " == *" kwok "* ]]; then
  # kwok carries no replace directives, so it installs on its own, outside the module above.
  (cd "$stage" && GOFLAGS=-buildvcs=false GOBIN="$stage" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
fi

for b in "${missing[@]}"; do
  if [[ -x "$stage/$b" ]]; then mv -f "$stage/$b" "$bindir/$b"; fi
done
printf 'kubernetes=%s\netcd=%s\nkwok=%s\n' "$K8S_VERSION" "$ETCD_VERSION" "$KWOK_VERSION" >"$bindir/VERSIONS"

end=$(date +%s)
log "done in $((end - start)) s; binaries $(du -sh "$bindir" | cut -f1), Go caches $(du -sh "$cache/go" | cut -f1)"
echo "$bindir"
