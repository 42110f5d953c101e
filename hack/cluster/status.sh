#!/usr/bin/env bash
# Exit 0 when the local cluster is fully up: env file written, every recorded process alive, apiserver ready.
# Prints one line per component.
set -euo pipefail
# shellcheck source=hack/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -f $CLUSTER_DIR/env ]] || { echo "not up: no $CLUSTER_DIR/env"; exit 1; }
ok=true
for f in "$PIDS"/*.pid; do
  name=$(basename "$f" .pid)
  if alive "$name"; then echo "$name: running (pid $(<"$f"))"; else echo "$name: NOT RUNNING"; ok=false; fi
done
# shellcheck source=/dev/null
source "$CLUSTER_DIR/env"
port=$(sed -n 's/^apiserver=//p' "$CLUSTER_DIR/ports")
host=$(sed -n 's/^api_host=//p' "$CLUSTER_DIR/ports")
host=${host:-127.0.0.1}
if curl -sf --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
  "https://$host:$port/readyz" >/dev/null; then
  echo "kube-apiserver: ready on $host:$port"
else
  echo "kube-apiserver: NOT READY"
  ok=false
fi
$ok
