#!/usr/bin/env bash
# Loads tote's image into the containerd of the local cluster's nodes, in the k8s.io namespace where the kubelet looks,
# under the name config/ and the chart run (ghcr.io/tote-dev/tote:v<version>): pods then start from it with
# imagePullPolicy IfNotPresent and no registry. The image is the one `make image-offline` assembles.
#
# Usage: hack/image/load-nodes.sh [NODE...]   (default: every node of the cluster hack/cluster/env.sh names)
# Prints the image reference on stdout.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck disable=SC1090
source "$("$root/hack/cluster/env.sh")"
version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$root/package.json")
image=ghcr.io/tote-dev/tote:v$version

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
TOTE_IMAGE_RUN=0 "$root/hack/image/build-offline.sh" "$work/layout" >&2
tar -C "$work/layout" -cf "$work/image.tar" .

declare -A sockets ctrs
for pair in $TOTE_NODE_SOCKETS; do sockets[${pair%%=*}]=${pair#*=}; done
for pair in ${TOTE_NODE_CTR:-}; do ctrs[${pair%%=*}]=${pair#*=}; done
read -r -a nodes <<<"${*:-$TOTE_NODES}"
for node in "${nodes[@]}"; do
  socket=${sockets[$node]:?unknown node $node}
  ctr=("${ctrs[$node]:-ctr}" --address "$socket" -n k8s.io)
  # The layout names its one image "offline" (org.opencontainers.image.ref.name); --base-name makes that
  # ghcr.io/tote-dev/tote:offline, which the tag then gives the release name. Import unpacks it for the kubelet.
  "${ctr[@]}" images import --base-name "${image%:*}" "$work/image.tar" >&2
  "${ctr[@]}" images tag --force "${image%:*}:offline" "$image" >&2
  echo "load-nodes: $image on $node" >&2
done
echo "$image"
