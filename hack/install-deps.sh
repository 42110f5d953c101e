#!/usr/bin/env bash
# Installs what a fresh machine lacks for tote's tests and demo: Debian packages (containerd, runc, registries,
# skopeo, ...) and the Kubernetes control plane built from the upstream Go modules (cached outside the repo).
# Idempotent: a warm machine does nothing but check.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

packages=(containerd runc docker-registry skopeo apache2-utils containernetworking-plugins openssl iproute2 procps)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ -x "$here/k8s/build.sh" ]]; then
  "$here/k8s/build.sh"
fi
