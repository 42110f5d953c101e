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
