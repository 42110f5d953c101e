#!/usr/bin/env bash
# Prints the path of the local cluster's sourceable env file (fails when the cluster is not up).
set -euo pipefail
# shellcheck source=hack/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -f $CLUSTER_DIR/env ]] || die "cluster not up (run: make cluster-up)"
echo "$CLUSTER_DIR/env"
