# shellcheck shell=bash
# Shared by the hack/cluster scripts: paths, process bookkeeping, waiting with a deadline.
# Every process the harness starts is recorded in $CLUSTER_DIR/pids/<name>.pid and carries $CLUSTER_DIR in its
# command line, so cleanup can find even the leftovers of a crashed run whose pid files are gone.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER_DIR="${TOTE_CLUSTER_DIR:-/tmp/tote-cluster}"
CLUSTER_DIR="${CLUSTER_DIR%/}"
case "$CLUSTER_DIR" in
  /*/*) ;;
  *) echo "TOTE_CLUSTER_DIR must be an absolute path at least two levels deep, got '$CLUSTER_DIR'" >&2 && exit 1 ;;
esac
NODE="$ROOT/node_modules/.bin/node"
PIDS="$CLUSTER_DIR/pids"
LOGS="$CLUSTER_DIR/logs"
PKI="$CLUSTER_DIR/pki"

log() { printf '%s cluster: %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# start NAME CMD... — runs CMD detached in its own session, logs to $LOGS/NAME.log, records its pid.
start() {
  local name=$1
  shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
}

alive() { # alive NAME — the recorded process is still running
  local pid
  [[ -f "$PIDS/$1.pid" ]] || return 1
  pid=$(<"$PIDS/$1.pid")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

# wait_until SECONDS DESCRIPTION CMD... — polls CMD (every 0.2 s) until it succeeds, failing after the deadline.
# COMPONENT, when set, names a process whose death aborts the wait at once (its log tail is shown).
wait_until() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [[ -n ${COMPONENT:-} ]] && ! alive "$COMPONENT"; then
      tail -n 30 "$LOGS/$COMPONENT.log" >&2 || true
      die "$COMPONENT exited while waiting for $what (log: $LOGS/$COMPONENT.log)"
    fi
    if ((SECONDS >= deadline)); then
      [[ -n ${COMPONENT:-} ]] && tail -n 30 "$LOGS/$COMPONENT.log" >&2
      die "timed out waiting for $what"
    fi
    sleep 0.2
  done
}

# Pids of every process whose command line mentions the cluster directory (ours by construction).
cluster_pids() {
  local p cmd ancestors=" " a=$$
  while [[ $a -gt 1 ]]; do # never this script or whoever called it
    ancestors+="$a "
    a=$(awk '/^PPid:/ { print $2 }' "/proc/$a/status" 2>/dev/null || echo 0)
  done
  for p in /proc/[0-9]*; do
    [[ $ancestors == *" ${p#/proc/} "* ]] && continue
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    [[ $cmd == *"$CLUSTER_DIR/"* ]] && echo "${p#/proc/}"
  done
}

# Mount points under the cluster directory, deepest first.
cluster_mounts() {
  awk -v d="$CLUSTER_DIR/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# registry_hosts NODE_DIR HOST:PORT http|https — containerd's certs.d entry for one registry (https trusts the test CA).
# Both `server` and a matching [host] table: containerd 1.6 rejects a file with only `server`.
registry_hosts() {
  local d=$1 host=$2 scheme=$3
  mkdir -p "$d/certs.d/$host"
  {
    echo "server = \"$scheme://$host\""
    echo "[host.\"$scheme://$host\"]"
    echo '  capabilities = ["pull", "resolve"]'
    [[ $scheme == http ]] || echo "  ca = \"$PKI/ca.crt\""
  } >"$d/certs.d/$host/hosts.toml"
}

# containerd_config NODE_DIR SNAPSHOTTER SANDBOX_IMAGE [RUNC_ROOT] — a node's containerd config (version 2, which
# containerd 2.x migrates in memory): own root, state, socket, CNI and registry hosts under NODE_DIR. With RUNC_ROOT
# (real nodes) runc keeps its state there instead of the shared /run/containerd/runc.
containerd_config() {
  local d=$1 snapshotter=$2 sandbox=$3 runc_root=${4:-}
  cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$d/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"

[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  sandbox_image = "$sandbox"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "$snapshotter"
    discard_unpacked_layers = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$d/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$d/certs.d"
EOF
  if [[ -n $runc_root ]]; then
    cat >>"$d/config.toml" <<EOF
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      Root = "$runc_root"
      SystemdCgroup = false
EOF
  fi
}
