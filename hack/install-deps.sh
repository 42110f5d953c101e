#!/usr/bin/env bash
# Installs what a fresh machine lacks for tote's tests and demo: Debian packages (containerd, runc, registries,
# skopeo, ...) and the Kubernetes control plane built from the upstream Go modules (cached outside the repo).
# Idempotent: a warm machine does nothing but check.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# curl and util-linux (setsid, mount) are used by hack/cluster/*.sh.
packages=(containerd runc docker-registry skopeo apache2-utils containernetworking-plugins openssl iproute2 procps curl util-linux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The control plane is built from source with the machine's Go (>= 1.26, GOPROXY as configured on the machine).
command -v go >/dev/null || { echo "install-deps: Go >= 1.26 is required to build the control plane" >&2; exit 1; }
"$here/k8s/build.sh" >/dev/null
