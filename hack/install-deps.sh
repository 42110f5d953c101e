#!/usr/bin/env bash
# Installs what a fresh machine lacks for tote's tests and demo: Debian packages (containerd, runc, registries,
# skopeo, ...), the Kubernetes control plane, kubelet and kube-proxy, and containerd 2.x, built from the upstream Go
# modules (cached outside the repo).
# Idempotent: a warm machine does nothing but check.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# curl and util-linux (setsid, mount, nsenter) are used by hack/cluster/*.sh; real nodes (TOTE_KUBELET=real) need
# containernetworking-plugins (bridge, host-local, loopback), iptables (the kubelet's chains in each node namespace),
# iproute2 (netns, veth, bridge, ss) and busybox-static (the pause image and test images that run). lua5.1 runs the
# Argo CD health checks in config/argocd the way Argo CD's gopher-lua does (Lua 5.1).
packages=(containerd runc docker-registry skopeo apache2-utils containernetworking-plugins openssl iproute2 procps curl
  util-linux iptables busybox-static lua5.1)
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
# containerd 2.x for real nodes and the agent's conformance matrix (the real-kubelet stories run it).
"$here/containerd/build.sh" >/dev/null
# Helm, from its Go module, for the chart's lint/template/install tests (config/helm/tote).
"$here/helm/build.sh" >/dev/null
