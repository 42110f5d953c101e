#!/usr/bin/env bash
# Stops every process of the local cluster, unmounts whatever its containerd daemons mounted and removes the state
# directory. Safe to run at any time: on a stopped cluster, on a half-started one, or after a crash.
set -euo pipefail
# shellcheck source=hack/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=hack/cluster/real-nodes.sh
source "$(dirname "${BASH_SOURCE[0]}")/real-nodes.sh"

# Real nodes first: kubelets (they would restart containers), then the containers themselves (found through the
# cluster's cgroup roots: they outlive shims and daemons). Remember the shims' sockets before they go.
real_stop_kubelets
real_kill_containers
mapfile -t shim_sockets < <(real_shim_sockets)

# Ask politely first: recorded pids, in reverse start order (simulator before containerd, apiserver before etcd).
if [[ -d $PIDS ]]; then
  while read -r f; do
    pid=$(<"$f") || continue
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true
  done < <(ls -t "$PIDS"/*.pid 2>/dev/null)
fi

# Then everything that still mentions the cluster directory (also leftovers of a crashed run).
deadline=$((SECONDS + 10))
while :; do
  mapfile -t left < <(cluster_pids)
  [[ ${#left[@]} -eq 0 ]] && break
  if ((SECONDS >= deadline)); then
    log "killing ${#left[@]} process(es) that ignored SIGTERM: ${left[*]}"
    kill -KILL "${left[@]}" 2>/dev/null || true
    sleep 0.2
    mapfile -t left < <(cluster_pids)
    [[ ${#left[@]} -eq 0 ]] && break
    die "processes still alive: ${left[*]}"
  fi
  kill -TERM "${left[@]}" 2>/dev/null || true
  sleep 0.2
done

# containerd's overlay and tmp mounts (a killed daemon leaves them behind).
while read -r m; do
  [[ -n $m ]] || continue
  umount "$m" 2>/dev/null || umount -l "$m" || log "could not unmount $m"
done < <(cluster_mounts)
if [[ -n $(cluster_mounts) ]]; then die "mounts left under $CLUSTER_DIR: $(cluster_mounts | tr '\n' ' ')"; fi
((${#shim_sockets[@]} == 0)) || rm -f "${shim_sockets[@]}"
real_cleanup
left=$(real_leftovers)
[[ -z $left ]] || die "left behind: $(tr '\n' ' ' <<<"$left")"

rm -rf "$CLUSTER_DIR"  # (a no-op when it is already gone; processes were looked for anyway)
log "cluster at $CLUSTER_DIR is down"
