# shellcheck shell=bash
# Real nodes (TOTE_KUBELET=real, docs/cluster.md): per node a network namespace, its own containerd (2.x or Debian's
# 1.6) and a real kubelet v1.36.3. Sourced by up.sh and down.sh after lib.sh.
#
# Network (one /16 per cluster, 10.<octet>.0.0, the first free octet from 200 on, derived from the state directory):
#   host bridge tb<tag> 10.<o>.0.1/24 ── veth tv<tag><i> ── eth0 10.<o>.0.<10+i>/24 in netns tote-<tag>-<node>
#   inside each namespace a CNI bridge cni0, pods in 10.<o>.<i+1>.0/24. Routes to every pod subnet via its node's eth0,
#   on the host and in every node namespace; pods route 10.<o>.0.0/16 and the service range through their bridge. No
#   default route anywhere, so nothing leaves the machine. In this mode the API server and both registries listen on
#   the bridge address instead of 127.0.0.1, so host processes and node namespaces reach them at the same address (one
#   name in image references). A kube-proxy per node namespace (iptables) makes Services work there, the in-cluster
#   API address 10.0.0.1:443 among them.
# Mounts: each node's containerd and kubelet share a mount namespace of their own (pinned at mntns/<node>), where
#   /run/containerd and /var/lib/containerd are that node's directories: a pod's hostPath /run/containerd/containerd.sock
#   is its own node's socket, as on a real machine.
# Everything a kubelet leaves on the host is named after the tag (cgroup roots /tote-<tag>-<node>, CNI cache entries
# tote-<tag>-<node>-*, netns) or lies under the state directory, so down.sh finds it even after a crash.

REAL_TAG=$(printf '%s' "$CLUSTER_DIR" | sha256sum | cut -c1-4)
REAL_BRIDGE="tb$REAL_TAG"
# The sandbox ("pause") image: busybox-static sleeping, built by hack/cluster/pause-image.ts, never pulled.
REAL_PAUSE_IMAGE=tote.invalid/pause:busybox
# Machine-wide bookkeeping shared by every real-node cluster: the host sysctls the kubelet changes, as they were.
REAL_MACHINE_STATE=/run/tote-real-nodes
REAL_SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory fs.inotify.max_user_instances
  fs.inotify.max_user_watches)
REAL_CGROUP_CONTROLLERS=(blkio cpu cpuacct cpuset devices freezer hugetlb memory net_cls net_prio perf_event pids rdma misc systemd)
# The Service range of the API server (--service-cluster-ip-range): its first address is the in-cluster API address.
REAL_SERVICE_CIDR=10.0.0.0/24

real_netns() { echo "tote-$REAL_TAG-$1"; }
# The file pinning a node's mount namespace (nsenter --mount=...).
real_mntns() { echo "$CLUSTER_DIR/mntns/$1"; }

# The /16 of this cluster: recorded at up, else the first octet from 200 (offset by the tag) no address uses.
real_octet() {
  if [[ -f $CLUSTER_DIR/network ]]; then
    sed -n 's/^octet=//p' "$CLUSTER_DIR/network"
    return
  fi
  local base=$((16#$REAL_TAG % 50)) i o
  for ((i = 0; i < 50; i++)); do
    o=$((200 + (base + i) % 50))
    if ! ip -4 -o addr show | grep -q " 10\.$o\." && ! ip -4 route show | grep -q "^10\.$o\."; then
      echo "$o"
      return
    fi
  done
  die "no free 10.x.0.0/16 for the node network"
}

# real_network_up OCTET — the host bridge with the address the control plane and the registries listen on.
real_network_up() {
  local o=$1
  echo "octet=$o" >"$CLUSTER_DIR/network"
  ip link add "$REAL_BRIDGE" type bridge
  ip addr add "10.$o.0.1/24" dev "$REAL_BRIDGE"
  ip link set "$REAL_BRIDGE" up
  # Before the first kubelet of any real cluster starts, remember the host-wide sysctls it will change.
  mkdir -p "$REAL_MACHINE_STATE"
  if [[ ! -f $REAL_MACHINE_STATE/sysctls ]]; then
    sysctl -e "${REAL_SYSCTLS[@]}" | sed 's/ = /=/' >"$REAL_MACHINE_STATE/sysctls.tmp"
    [[ -d /var/lib/kubelet ]] || echo /var/lib/kubelet >>"$REAL_MACHINE_STATE/created"
    [[ -d /var/log/containers ]] || echo /var/log/containers >>"$REAL_MACHINE_STATE/created"
    [[ -d /run/containerd ]] || echo /run/containerd >>"$REAL_MACHINE_STATE/created"
    [[ -d /var/lib/cni ]] || echo /var/lib/cni >>"$REAL_MACHINE_STATE/created"
    mv "$REAL_MACHINE_STATE/sysctls.tmp" "$REAL_MACHINE_STATE/sysctls"
  fi
  # Each kubelet and containerd holds inotify instances, 128 per user by default: a few real clusters at once (tests
  # beside the demo) exhaust them, and containerd then starts without its CRI plugin. Raised as kind advises for
  # several nodes on one machine; restored with the other sysctls when the last real cluster goes.
  real_sysctl_at_least fs.inotify.max_user_instances 1024
  real_sysctl_at_least fs.inotify.max_user_watches 524288
  # Mount points of the nodes' own /run/containerd and /var/lib/containerd (empty on the host; removed with the last
  # real cluster when this one made them).
  [[ -d /var/lib/containerd ]] || echo /var/lib/containerd >>"$REAL_MACHINE_STATE/created"
  mkdir -p /run/containerd /var/lib/containerd
  # Mount namespaces are pinned by bind mounts of their nsfs files, which must not sit on a shared mount (the pin
  # would propagate into the namespace it pins): a private bind mount of the directory itself.
  mkdir -p "$CLUSTER_DIR/mntns"
  mount --bind "$CLUSTER_DIR/mntns" "$CLUSTER_DIR/mntns"
  mount --make-private "$CLUSTER_DIR/mntns"
}

# real_sysctl_at_least KEY VALUE — raise a host sysctl to VALUE unless it is higher already.
real_sysctl_at_least() {
  local now
  now=$(sysctl -n "$1" 2>/dev/null || echo 0)
  ((now >= $2)) || sysctl -q -w "$1=$2" >/dev/null
}

# real_containerd_version NODE DEFAULT — the containerd version TOTE_CONTAINERD chooses for NODE ("2", "1.6", or per
# node "node-a=1.6 node-b=2"; a node it does not name gets DEFAULT).
real_containerd_version() {
  local n=$1 word v=$2
  for word in ${TOTE_CONTAINERD:-}; do
    if [[ $word == *=* ]]; then
      [[ ${word%%=*} == "$n" ]] && v=${word#*=}
    else
      v=$word
    fi
  done
  case "$v" in
    2 | 2.x) echo 2 ;;
    1.6) echo 1.6 ;;
    *) die "TOTE_CONTAINERD: unknown version '$v' for $n (2 or 1.6)" ;;
  esac
}

# real_node_prepare NODE INDEX OCTET CONTAINERD_BIN API_URL — namespace, veth, cgroup roots, kubelet certificate and
# configuration, CNI configuration (containerd's own config is written by containerd_config in lib.sh).
real_node_prepare() {
  local n=$1 i=$2 o=$3 bin=$4 api=$5
  local d="$CLUSTER_DIR/nodes/$n" ns veth ip c cg
  ns=$(real_netns "$n")
  veth="tv$REAL_TAG$i"
  ip="10.$o.0.$((10 + i))"
  ip netns add "$ns"
  ip link add "$veth" type veth peer name "${veth}n"
  ip link set "${veth}n" netns "$ns"
  ip -n "$ns" link set "${veth}n" name eth0
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  ip link set "$veth" master "$REAL_BRIDGE" up
  # The node routes its pods' packets (to other nodes' pods, to Services, to the API server): forwarding on, in the
  # node's namespace only. The host routes replies to this node's pods through it.
  nsenter --net="/run/netns/$ns" sysctl -qw net.ipv4.ip_forward=1
  ip route add "10.$o.$((i + 1)).0/24" via "$ip" dev "$REAL_BRIDGE"

  # The node's mount namespace: a copy of the host's with this node's containerd directories at the standard paths.
  # Propagation stays as on the host (so the pods' network namespaces, which containerd mounts under the shared
  # /run/netns, show on the host as before) except for the mounts holding those two paths, which become slaves: the
  # node's bind mounts never reach the host or another node. The socket is a link to the one everything else uses
  # (the kubelet and containerd resolve it).
  mkdir -p "$d/run-containerd"
  ln -sfn "$d/containerd.sock" "$d/run-containerd/containerd.sock"
  touch "$(real_mntns "$n")"
  unshare --mount="$(real_mntns "$n")" --propagation unchanged true
  nsenter --mount="$(real_mntns "$n")" -- sh -ec "
    mount --make-slave \"\$(findmnt -n -o TARGET --target /run/containerd)\"
    mount --make-slave \"\$(findmnt -n -o TARGET --target /var/lib/containerd)\"
    mount --bind '$d/run-containerd' /run/containerd
    mount --bind '$d/root' /var/lib/containerd"

  # The kubelet wants its cgroup root in every v1 hierarchy, cpuset filled in from the parent. On a cgroup v2 host
  # (not the development machine's case, so not exercised there) one directory with the controllers delegated.
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    mkdir -p "/sys/fs/cgroup/tote-$REAL_TAG-$n"
    for c in cpuset cpu io memory hugetlb pids; do echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true; done
  fi
  for c in "${REAL_CGROUP_CONTROLLERS[@]}"; do
    [[ -d /sys/fs/cgroup/$c ]] || continue
    cg="/sys/fs/cgroup/$c/tote-$REAL_TAG-$n"
    mkdir -p "$cg"
    if [[ $c == cpuset ]]; then
      cat /sys/fs/cgroup/cpuset/cpuset.cpus >"$cg/cpuset.cpus"
      cat /sys/fs/cgroup/cpuset/cpuset.mems >"$cg/cpuset.mems"
    fi
  done

  mkdir -p "$d/kubelet" "$d/kubelet-pki" "$d/pod-logs" "$d/cni-ipam" "$d/runc"
  issue "kubelet-$n" "/O=system:nodes/CN=system:node:$n" clientAuth
  real_kubeconfig "$d/kubelet.kubeconfig" "$api" "kubelet-$n"
  cat >"$d/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
cgroupRoot: /tote-$REAL_TAG-$n
containerRuntimeEndpoint: unix://$d/containerd.sock
imageServiceEndpoint: unix://$d/containerd.sock
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: "$PKI/ca.crt" }
authorization: { mode: Webhook }
podLogsDir: $d/pod-logs
resolvConf: ""
# Images are never collected by disk usage (a test decides what a node holds); the sandbox image is pinned anyway.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# The development machine's disk is not the nodes' business: evict only when nearly full.
evictionHard: { memory.available: "20Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%" }
serializeImagePulls: true
nodeStatusUpdateFrequency: 10s
syncFrequency: 10s
EOF
  # Pods get real addresses from Debian's bridge + host-local plugins; the bridge lives inside the node's namespace.
  cat >"$d/cni/10-tote.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "tote-$REAL_TAG-$n",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$d/cni-ipam", "ranges": [[{ "subnet": "10.$o.$((i + 1)).0/24" }]],
        "routes": [{ "dst": "10.$o.0.0/16" }, { "dst": "$REAL_SERVICE_CIDR" }]
      }
    },
    { "type": "loopback" }
  ]
}
EOF
  printf '%s\n' "$bin" >"$d/containerd-binary"

  # kube-proxy (iptables) in the node's namespace: the Services' rules, the in-cluster API address among them.
  # Conntrack sysctls are left alone (host-wide, or not writable from a namespace).
  real_kubeconfig "$d/kube-proxy.kubeconfig" "$api" kube-proxy
  cat >"$d/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: { kubeconfig: "$d/kube-proxy.kubeconfig" }
hostnameOverride: $n
mode: iptables
clusterCIDR: 10.$o.0.0/16
healthzBindAddress: 127.0.0.1:10256
nodePortAddresses: [primary]
metricsBindAddress: 127.0.0.1:10249
conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s }
EOF
}

# real_kubeconfig FILE API_URL NAME — a kubeconfig with the client certificate $PKI/NAME.crt (made by issue in up.sh).
real_kubeconfig() {
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tote
  cluster: { server: "$2", certificate-authority: "$PKI/ca.crt" }
users:
- name: $3
  user: { client-certificate: "$PKI/$3.crt", client-key: "$PKI/$3.key" }
contexts:
- name: tote
  context: { cluster: tote, user: $3 }
current-context: tote
EOF
}

# real_routes OCTET NODE... — every node namespace routes the other nodes' pod subnets through their eth0.
real_routes() {
  local o=$1 i j
  shift
  local nodes=("$@")
  for ((i = 0; i < ${#nodes[@]}; i++)); do
    for ((j = 0; j < ${#nodes[@]}; j++)); do
      ((i == j)) || ip -n "$(real_netns "${nodes[i]}")" route add "10.$o.$((j + 1)).0/24" via "10.$o.0.$((10 + j))"
    done
  done
}

# real_containerd_start NODE — containerd inside the node's namespace (nsenter, not `ip netns exec`: that one also makes
# a mount namespace and remounts /sys, hiding the cgroup tree and the kubelet's mounts from containerd).
real_containerd_start() {
  local n=$1 d="$CLUSTER_DIR/nodes/$1" bin
  bin=$(<"$d/containerd-binary")
  # The daemon finds its shim on PATH: the one built beside a 2.x binary must win over Debian's 1.6 shim.
  start "containerd-$n" env PATH="$(dirname "$bin"):$PATH" \
    nsenter --mount="$(real_mntns "$n")" --net="/run/netns/$(real_netns "$n")" -- "$bin" --config "$d/config.toml"
}

# real_node_start NODE KUBELET_BIN — imports the pause image, then starts the kubelet in the node's namespaces.
real_node_start() {
  local n=$1 kubelet=$2 d="$CLUSTER_DIR/nodes/$1" ctr ip
  ctr="$(dirname "$(<"$d/containerd-binary")")/ctr"
  [[ -x $ctr ]] || ctr=ctr
  "$ctr" --address "$d/containerd.sock" -n k8s.io images import --snapshotter "$snapshotter" \
    "$CLUSTER_DIR/pause.tar" >>"$LOGS/pause-import.log" 2>&1 || die "importing the pause image into $n failed"
  ip=$(sed -n 's/^address: //p' "$d/kubelet.yaml")
  start "kubelet-$n" nsenter --mount="$(real_mntns "$n")" --net="/run/netns/$(real_netns "$n")" -- "$kubelet" \
    --config="$d/kubelet.yaml" --kubeconfig="$d/kubelet.kubeconfig" --root-dir="$d/kubelet" \
    --cert-dir="$d/kubelet-pki" --hostname-override="$n" --node-ip="$ip" --v=1
}

# real_proxy_start NODE KUBE_PROXY_BIN — kube-proxy in the node's network namespace (it needs no mount of the node's).
real_proxy_start() {
  local n=$1 d="$CLUSTER_DIR/nodes/$1"
  start "kube-proxy-$n" nsenter --net="/run/netns/$(real_netns "$n")" -- "$2" --config="$d/kube-proxy.yaml" --v=1
}

# real_proxy_synced NODE — kube-proxy's /healthz answers 200 once it has synced its rules with the API server.
real_proxy_synced() {
  nsenter --net="/run/netns/$(real_netns "$1")" curl -sf --max-time 2 http://127.0.0.1:10256/healthz
}

# --- teardown (down.sh) ----------------------------------------------------------------------------------------------

# Every pid in this cluster's cgroup roots: the containers, which outlive their shims.
real_cgroup_pids() {
  find /sys/fs/cgroup/tote-"$REAL_TAG"-* /sys/fs/cgroup/*/tote-"$REAL_TAG"-* -name cgroup.procs -exec cat {} + 2>/dev/null |
    sort -u
}

# Kubelets of this cluster, found by their command line (pid files may be gone after a crash).
real_kubelet_pids() {
  local p
  for p in $(cluster_pids); do
    [[ $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") == *"--kubeconfig=$CLUSTER_DIR/nodes/"*/kubelet.kubeconfig* ]] &&
      echo "$p"
  done
  true
}

real_stop_kubelets() {
  local pids deadline=$((SECONDS + 10))
  mapfile -t pids < <(real_kubelet_pids)
  ((${#pids[@]} > 0)) || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  while [[ -n $(real_kubelet_pids) ]] && ((SECONDS < deadline)); do sleep 0.1; done
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

real_kill_containers() {
  local pids
  mapfile -t pids < <(real_cgroup_pids)
  if ((${#pids[@]} > 0)); then
    kill -KILL "${pids[@]}" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while [[ -n $(real_cgroup_pids) ]] && ((SECONDS < deadline)); do sleep 0.1; done
  fi
}

# Sockets of this cluster's shims under /run/containerd/s (a shim does not remove its own when it is killed). containerd
# names them sha256("<its socket>/<namespace>/<shim id>"); the shim ids are the task directories in its state, which
# outlive a crash. Since each node has its own /run/containerd (nodes/<node>/run-containerd) they land under the state
# directory; this finds those of a cluster started before, in the host's /run/containerd.
real_shim_sockets() {
  local d t h
  for d in "$CLUSTER_DIR"/nodes/*; do
    for t in "$d"/state/io.containerd.runtime.v2.task/*/*; do
      [[ -d $t ]] || continue
      h=$(printf '%s' "$d/containerd.sock/$(basename "$(dirname "$t")")/$(basename "$t")" | sha256sum | cut -c1-64)
      [[ -e /run/containerd/s/$h ]] && echo "/run/containerd/s/$h"
      [[ -e /run/containerd/s/$h.debug ]] && echo "/run/containerd/s/$h.debug"
    done
  done
  true
}

# Pod network namespaces (/run/netns/cni-*, made by containerd) of this cluster's pods.
real_pod_netns() {
  local o ns
  o=$(sed -n 's/^octet=//p' "$CLUSTER_DIR/network" 2>/dev/null || true)
  for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ { print $1 }'); do
    if { [[ -n $o ]] && ip -n "$ns" -4 -o addr show 2>/dev/null | grep -q " 10\.$o\."; } ||
      grep -qs "/netns/$ns\"" /var/lib/cni/results/tote-"$REAL_TAG"-*; then
      echo "$ns"
    fi
  done
}

# Everything else, after the processes are gone: namespaces (veths and the CNI bridges go with them), pod namespaces
# made by containerd, the host bridge, cgroups, CNI cache, log symlinks; finally the host sysctls when no other real
# cluster is left.
real_cleanup() {
  local o ns f cg
  # Pods' namespaces first, while their eth0 (whose peer lives in the node's namespace) still shows a cluster address;
  # failing that, when libcni's cache of this cluster names them.
  for ns in $(real_pod_netns); do
    umount "/run/netns/$ns" 2>/dev/null || umount -l "/run/netns/$ns" 2>/dev/null || true
    rm -f "/run/netns/$ns"
  done
  for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }'); do
    if [[ $ns == tote-$REAL_TAG-* ]]; then
      ip netns delete "$ns" 2>/dev/null || umount -l "/run/netns/$ns" 2>/dev/null || true
      rm -f "/run/netns/$ns"
    fi
  done
  ip link delete "$REAL_BRIDGE" 2>/dev/null || true
  for cg in /sys/fs/cgroup/tote-"$REAL_TAG"-* /sys/fs/cgroup/*/tote-"$REAL_TAG"-*; do
    [[ -d $cg ]] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  # libcni's cache: <network>-<sandbox id>-<interface>; containerd adds its own loopback network per sandbox.
  for f in /var/lib/cni/results/tote-"$REAL_TAG"-*; do
    [[ -e $f ]] || continue
    local id=${f%-*}
    rm -f "$f" "/var/lib/cni/results/cni-loopback-${id##*-}-lo"
  done
  if [[ -d /var/log/containers ]]; then
    for f in /var/log/containers/*; do
      [[ -L $f && $(readlink "$f") == "$CLUSTER_DIR/"* ]] && rm -f "$f"
    done
  fi
  real_restore_machine
}

real_restore_machine() {
  [[ -f $REAL_MACHINE_STATE/sysctls ]] || return 0
  # Another real cluster still running keeps the machine state (its kubelets set the same values).
  if ip netns list 2>/dev/null | awk '{ print $1 }' | grep -qE '^tote-[0-9a-f]{4}-'; then return 0; fi
  if ip -o link show type bridge 2>/dev/null | grep -qE ': tb[0-9a-f]{4}:'; then return 0; fi
  local kv p
  while read -r kv; do sysctl -q -w "$kv" >/dev/null || log "could not restore $kv"; done <"$REAL_MACHINE_STATE/sysctls"
  if [[ -f $REAL_MACHINE_STATE/created ]]; then
    while read -r p; do
      # Only sockets (the kubelets' device-plugin socket, shims'), symlinks and directories left empty, never files.
      [[ -n $p && -d $p ]] && find "$p" -depth \( -type s -o -type l -o \( -type d -empty \) \) -delete 2>/dev/null
    done <"$REAL_MACHINE_STATE/created"
  fi
  rm -rf "$REAL_MACHINE_STATE"
}

# What a crash or a bad teardown may have left; empty when this cluster left nothing behind. Used by down.sh to fail
# loudly, and by tests.
real_leftovers() {
  local cg
  ip netns list 2>/dev/null | awk -v p="tote-$REAL_TAG-" 'index($1, p) == 1 { print "netns " $1 }'
  ip link show "$REAL_BRIDGE" >/dev/null 2>&1 && echo "bridge $REAL_BRIDGE"
  ip -o link show 2>/dev/null | awk -F': ' -v p="tv$REAL_TAG" 'index($2, p) == 1 { print "veth " $2 }'
  real_pod_netns | sed 's/^/pod netns /'
  for cg in /sys/fs/cgroup/tote-"$REAL_TAG"-* /sys/fs/cgroup/*/tote-"$REAL_TAG"-*; do
    [[ -d $cg ]] && echo "cgroup $cg"
  done
  true
}
