# Sourced by the scripts that build tools from Go modules (hack/k8s, hack/containerd, hack/helm): one module and build
# cache under $TOTE_CACHE for all of them, so a module two tools share is downloaded and compiled once; static builds
# with the machine's own Go (GOPROXY is deliberately inherited from the machine).
# Needs `log` defined by the caller. Sets `cache`.
cache="${TOTE_CACHE:-$HOME/.cache/tote}"
command -v go >/dev/null || { log "go is not installed (need Go >= 1.26)"; exit 1; }
export GOMODCACHE="$cache/go/mod"
export GOCACHE="$cache/go/build"
export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p "$cache/bin" "$GOMODCACHE" "$GOCACHE"
