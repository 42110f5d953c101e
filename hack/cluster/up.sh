#!/usr/bin/env bash
# Starts tote's local test cluster on 127.0.0.1 (see docs/cluster.md):
#   etcd, kube-apiserver (RBAC, real certificates), kube-controller-manager, kube-scheduler, tote's CRDs,
#   one containerd daemon per node, a source registry (plain HTTP, deletable) and a backup registry (TLS + htpasswd),
#   and per node either the node simulator (TOTE_KUBELET=simulated, the default) or a real kubelet in the node's own
#   network namespace (TOTE_KUBELET=real, hack/cluster/real-nodes.sh).
# Idempotent: a healthy cluster is left alone; anything else (half-started, crashed, stale) is cleaned up first.
# Settings (environment): TOTE_CLUSTER_DIR (/tmp/tote-cluster), TOTE_NODES ("node-a node-b node-c"),
#   TOTE_SIM_PULL_BACKOFF_INITIAL / TOTE_SIM_PULL_BACKOFF_MAX (the kubelet's 10s / 300s), TOTE_SIM_RESYNC (2s),
#   TOTE_CRD_DIR (CRDs to install, default crds/), TOTE_CACHE (binary cache, see hack/k8s/build.sh),
#   TOTE_KUBELET (simulated | real), TOTE_CONTAINERD (1.6 | 2, or per node "node-a=1.6 node-b=2"; the default is 1.6
#   for simulated nodes and 2 for real ones; 2 is built by hack/containerd/build.sh).
set -euo pipefail
# shellcheck source=hack/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

read -r -a nodes <<<"${TOTE_NODES:-node-a node-b node-c}"
[[ ${#nodes[@]} -gt 0 ]] || die "TOTE_NODES is empty"

kubelet_kind=${TOTE_KUBELET:-simulated}
case "$kubelet_kind" in
  simulated | real) ;;
  *) die "TOTE_KUBELET must be simulated or real, got '$kubelet_kind'" ;;
esac
# shellcheck source=hack/cluster/real-nodes.sh
source "$ROOT/hack/cluster/real-nodes.sh"
default_containerd=2
[[ $kubelet_kind == real ]] || default_containerd=1.6
declare -A containerd_bin
containerd_versions=()
for n in "${nodes[@]}"; do
  v=$(real_containerd_version "$n" "$default_containerd")
  containerd_versions+=("$n=$v")
  if [[ $v == 2 ]]; then
    containerd_bin[$n]=$("$ROOT/hack/containerd/build.sh")
  else
    containerd_bin[$n]=/usr/bin/containerd
  fi
done

bin=$("$ROOT/hack/k8s/build.sh")
kubectl="$bin/kubectl"

# A healthy cluster of the kind asked for is left alone; one of another kind (simulated vs real, other containerd
# versions) is replaced. An env file from before real nodes existed describes simulated nodes on 1.6.
env_value() { sed -n "s/^export $1='\(.*\)'\$/\1/p" "$CLUSTER_DIR/env" 2>/dev/null; }
if "$ROOT/hack/cluster/status.sh" >/dev/null 2>&1; then
  running_kind=$(env_value TOTE_KUBELET)
  running_kind=${running_kind:-simulated}
  running_containerd=$(env_value TOTE_CONTAINERD)
  [[ -n $running_containerd ]] || running_containerd=$(for n in $(env_value TOTE_NODES); do printf '%s=1.6 ' "$n"; done)
  # Real nodes from before each node had its own mount namespace (and kube-proxy) are replaced too.
  if [[ $running_kind == "$kubelet_kind" && ${running_containerd% } == "${containerd_versions[*]}" ]] &&
    [[ $kubelet_kind == simulated || -n $(env_value TOTE_NODE_MNTNS) ]]; then
    log "already up ($CLUSTER_DIR/env)"
    exit 0
  fi
  log "running: $running_kind nodes (${running_containerd% }); asked for $kubelet_kind (${containerd_versions[*]}): replacing"
fi
"$ROOT/hack/cluster/down.sh"

began=$SECONDS
mkdir -p "$PIDS" "$LOGS" "$PKI"

# Real nodes live in network namespaces: the API server and the registries listen on the host bridge's address, which
# host processes and every node reach alike. Simulated nodes need only loopback.
host_ip=127.0.0.1
if [[ $kubelet_kind == real ]]; then
  octet=$(real_octet)
  real_network_up "$octet"
  host_ip="10.$octet.0.1"
fi

# --- ports -----------------------------------------------------------------------------------------------------------
# The kernel hands out free ports; they are released just before use, so a collision needs another process to grab
# one in that instant.
read -r p_etcd p_etcd_peer p_api p_source p_backup < <("$NODE" -e '
  const net = require("node:net");
  const servers = Array.from({ length: 5 }, () => net.createServer());
  Promise.all(servers.map((s) => new Promise((ok) => s.listen(0, "127.0.0.1", () => ok(s.address().port)))))
    .then((ports) => { console.log(ports.join(" ")); servers.forEach((s) => s.close()); });')
cat >"$CLUSTER_DIR/ports" <<EOF
etcd=$p_etcd
etcd_peer=$p_etcd_peer
apiserver=$p_api
api_host=$host_ip
source_registry=$p_source
backup_registry=$p_backup
EOF

# --- certificates ----------------------------------------------------------------------------------------------------
# One test CA signs everything: the apiserver's serving cert, the admin client cert, the backup registry's cert.
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 30 -subj "/CN=tote-test-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
issue() { # issue NAME SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
  local ext="keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=$3\n"
  [[ -n ${4:-} ]] && ext+="subjectAltName=$4\n"
  openssl req "${ec[@]}" -keyout "$PKI/$1.key" -out "$PKI/$1.csr" -subj "$2" 2>/dev/null
  openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 30 \
    -out "$PKI/$1.crt" -extfile <(printf '%b' "$ext") 2>/dev/null
}
issue apiserver "/CN=kube-apiserver" serverAuth \
  "IP:127.0.0.1,IP:$host_ip,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
issue admin "/O=system:masters/CN=admin" clientAuth
issue registry "/CN=tote-backup-registry" serverAuth "IP:127.0.0.1,IP:$host_ip,DNS:localhost"
# The API server's client certificate towards kubelets (logs, exec): a superuser, authorized by the kubelets' webhook.
issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
# kube-proxy of real nodes: the user the default ClusterRoleBinding system:node-proxier names.
[[ $kubelet_kind == simulated ]] || issue kube-proxy "/CN=system:kube-proxy" clientAuth
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$PKI/sa.key"
openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null

# --- etcd, registries and containerd start at once; the apiserver follows etcd ---------------------------------------
start etcd "$bin/etcd" --name=default --data-dir="$CLUSTER_DIR/etcd" --unsafe-no-fsync --log-level=warn \
  --listen-client-urls="http://127.0.0.1:$p_etcd" --advertise-client-urls="http://127.0.0.1:$p_etcd" \
  --listen-peer-urls="http://127.0.0.1:$p_etcd_peer" --initial-advertise-peer-urls="http://127.0.0.1:$p_etcd_peer" \
  --initial-cluster="default=http://127.0.0.1:$p_etcd_peer"

registry_password=$(openssl rand -hex 16)
for r in source backup; do
  mkdir -p "$CLUSTER_DIR/registry/$r/data"
done
cat >"$CLUSTER_DIR/registry/source/config.yml" <<EOF
version: 0.1
log: { level: warn, formatter: text }
storage:
  filesystem: { rootdirectory: $CLUSTER_DIR/registry/source/data }
  delete: { enabled: true }
  maintenance: { uploadpurging: { enabled: false } }
http:
  addr: $host_ip:$p_source
EOF
htpasswd -Bbn tote "$registry_password" >"$CLUSTER_DIR/registry/backup/htpasswd" 2>/dev/null
cat >"$CLUSTER_DIR/registry/backup/config.yml" <<EOF
version: 0.1
log: { level: warn, formatter: text }
storage:
  filesystem: { rootdirectory: $CLUSTER_DIR/registry/backup/data }
  delete: { enabled: true }
  maintenance: { uploadpurging: { enabled: false } }
auth:
  htpasswd: { realm: tote-backup, path: $CLUSTER_DIR/registry/backup/htpasswd }
http:
  addr: $host_ip:$p_backup
  tls: { certificate: $PKI/registry.crt, key: $PKI/registry.key }
EOF
start registry-source docker-registry serve "$CLUSTER_DIR/registry/source/config.yml"
start registry-backup docker-registry serve "$CLUSTER_DIR/registry/backup/config.yml"

# overlayfs when the kernel and the filesystem under the state directory allow it, else the copying "native" one.
probe="$CLUSTER_DIR/overlay-probe"
mkdir -p "$probe"/{lower,upper,work,merged}
snapshotter=native
if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" "$probe/merged" 2>/dev/null; then
  umount "$probe/merged"
  snapshotter=overlayfs
fi
rm -rf "$probe"

node_sockets=()
node_netns=()
[[ $kubelet_kind == simulated ]] || "$NODE" "$ROOT/hack/cluster/pause-image.ts" "$REAL_PAUSE_IMAGE" "$CLUSTER_DIR/pause.tar"
i=0
for n in "${nodes[@]}"; do
  d="$CLUSTER_DIR/nodes/$n"
  mkdir -p "$d/root" "$d/state" "$d/opt" "$d/cni"
  registry_hosts "$d" "$host_ip:$p_source" http
  registry_hosts "$d" "$host_ip:$p_backup" https
  if [[ $kubelet_kind == real ]]; then
    containerd_config "$d" "$snapshotter" "$REAL_PAUSE_IMAGE" "$d/runc"
    real_node_prepare "$n" "$i" "$octet" "${containerd_bin[$n]}" "https://$host_ip:$p_api"
    real_containerd_start "$n"
    node_netns+=("$n=$(real_netns "$n")")
  else
    containerd_config "$d" "$snapshotter" tote.invalid/pause:never-pulled
    start "containerd-$n" env PATH="$(dirname "${containerd_bin[$n]}"):$PATH" "${containerd_bin[$n]}" \
      --config "$d/config.toml"
  fi
  node_sockets+=("$n=$d/containerd.sock")
  i=$((i + 1))
done
[[ $kubelet_kind == simulated ]] || real_routes "$octet" "${nodes[@]}"

COMPONENT=etcd wait_until 30 "etcd" curl -sf "http://127.0.0.1:$p_etcd/readyz"

kubelet_client=()
if [[ $kubelet_kind == real ]]; then
  # Kubelets are reached at their node IP (the default tries the hostname first, which resolves nowhere here).
  kubelet_client=(--kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt"
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" --kubelet-preferred-address-types=InternalIP)
fi
start kube-apiserver "$bin/kube-apiserver" "${kubelet_client[@]}" \
  --etcd-servers="http://127.0.0.1:$p_etcd" --bind-address="$host_ip" --advertise-address="$host_ip" \
  --secure-port="$p_api" --cert-dir="$PKI/apiserver-generated" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" --client-ca-file="$PKI/ca.crt" \
  --authorization-mode=Node,RBAC --allow-privileged=true \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 --profiling=false

# Kubeconfig for admin (system:masters); the same file serves kubectl, client-node and the control-plane clients.
b64() { base64 -w0 <"$1"; }
cat >"$CLUSTER_DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tote
  cluster:
    server: https://$host_ip:$p_api
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(b64 "$PKI/admin.crt")
    client-key-data: $(b64 "$PKI/admin.key")
contexts:
- name: tote
  context: { cluster: tote, user: admin }
current-context: tote
EOF
chmod 600 "$CLUSTER_DIR/kubeconfig"
kc=(--kubeconfig="$CLUSTER_DIR/kubeconfig")

COMPONENT=kube-apiserver wait_until 60 "kube-apiserver /readyz" curl -sf --cacert "$PKI/ca.crt" \
  --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://$host_ip:$p_api/readyz"

start kube-controller-manager "$bin/kube-controller-manager" "${kc[@]}" \
  --authentication-kubeconfig="$CLUSTER_DIR/kubeconfig" --authorization-kubeconfig="$CLUSTER_DIR/kubeconfig" \
  --leader-elect=false --controllers='*' --use-service-account-credentials=true \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --bind-address=127.0.0.1 --secure-port=0
start kube-scheduler "$bin/kube-scheduler" "${kc[@]}" \
  --authentication-kubeconfig="$CLUSTER_DIR/kubeconfig" --authorization-kubeconfig="$CLUSTER_DIR/kubeconfig" \
  --leader-elect=false --bind-address=127.0.0.1 --secure-port=0

shopt -s nullglob
crd_dir="${TOTE_CRD_DIR:-$ROOT/crds}"
crds=("$crd_dir"/*.yaml)
shopt -u nullglob
if [[ ${#crds[@]} -gt 0 ]]; then
  "$kubectl" "${kc[@]}" apply --server-side -f "$crd_dir" >"$LOGS/crds.log"
fi

for n in "${nodes[@]}"; do
  COMPONENT="containerd-$n" wait_until 30 "containerd of $n" \
    ctr --address "$CLUSTER_DIR/nodes/$n/containerd.sock" version
done
COMPONENT=registry-source wait_until 30 "source registry" curl -sf "http://$host_ip:$p_source/v2/"
COMPONENT=registry-backup wait_until 30 "backup registry" curl -sf --cacert "$PKI/ca.crt" \
  -u "tote:$registry_password" "https://$host_ip:$p_backup/v2/"

if [[ $kubelet_kind == real ]]; then
  for n in "${nodes[@]}"; do
    real_node_start "$n" "$bin/kubelet"
    real_proxy_start "$n" "$bin/kube-proxy"
  done
  node_component() { echo "kubelet-$1"; }
else
  sim_args=(--kubeconfig="$CLUSTER_DIR/kubeconfig")
  for s in "${node_sockets[@]}"; do sim_args+=(--node="$s"); done
  sim_args+=(--pull-backoff-initial="${TOTE_SIM_PULL_BACKOFF_INITIAL:-10s}")
  sim_args+=(--pull-backoff-max="${TOTE_SIM_PULL_BACKOFF_MAX:-300s}")
  sim_args+=(--resync="${TOTE_SIM_RESYNC:-2s}")
  start node-simulator "$NODE" "$ROOT/test/support/node-simulator/main.ts" "${sim_args[@]}"
  node_component() { echo node-simulator; }
fi

node_ready() {
  [[ $("$kubectl" "${kc[@]}" get node "$1" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]
}
for n in "${nodes[@]}"; do
  COMPONENT=$(node_component "$n") wait_until 60 "node $n to be Ready" node_ready "$n"
done
# Services (the in-cluster API address first of all) work once each kube-proxy has written its rules.
if [[ $kubelet_kind == real ]]; then
  for n in "${nodes[@]}"; do COMPONENT="kube-proxy-$n" wait_until 30 "kube-proxy of $n" real_proxy_synced "$n"; done
fi
if [[ ${#crds[@]} -gt 0 ]]; then
  "$kubectl" "${kc[@]}" wait --for=condition=Established --timeout=30s -f "$crd_dir" >>"$LOGS/crds.log"
fi
# Pods in "default" need its ServiceAccount, which the controller-manager creates shortly after it starts.
COMPONENT=kube-controller-manager wait_until 30 "the default ServiceAccount" \
  "$kubectl" "${kc[@]}" get serviceaccount default -n default

node_socket_list="${node_sockets[*]}"
cat >"$CLUSTER_DIR/env.tmp" <<EOF
# tote local cluster ($CLUSTER_DIR), written by hack/cluster/up.sh; source it.
export TOTE_CLUSTER_DIR='$CLUSTER_DIR'
export KUBECONFIG='$CLUSTER_DIR/kubeconfig'
export TOTE_KUBECTL='$kubectl'
export TOTE_K8S_BIN='$bin'
export TOTE_NODES='${nodes[*]}'
export TOTE_NODE_SOCKETS='$node_socket_list'
export TOTE_SNAPSHOTTER='$snapshotter'
export TOTE_SOURCE_REGISTRY='$host_ip:$p_source'
export TOTE_SOURCE_REGISTRY_CONFIG='$CLUSTER_DIR/registry/source/config.yml'
export TOTE_BACKUP_REGISTRY='$host_ip:$p_backup'
export TOTE_BACKUP_REGISTRY_CONFIG='$CLUSTER_DIR/registry/backup/config.yml'
export TOTE_BACKUP_REGISTRY_USER='tote'
export TOTE_BACKUP_REGISTRY_PASSWORD='$registry_password'
export TOTE_CA_FILE='$PKI/ca.crt'
export TOTE_CA_KEY_FILE='$PKI/ca.key'
export TOTE_KUBELET='$kubelet_kind'
export TOTE_CONTAINERD='${containerd_versions[*]}'
export TOTE_NODE_NETNS='${node_netns[*]}'
export TOTE_NODE_MNTNS='$(for n in "${node_netns[@]}"; do printf '%s=%s ' "${n%%=*}" "$(real_mntns "${n%%=*}")"; done | sed 's/ $//')'
export TOTE_NODE_CTR='$(for n in "${nodes[@]}"; do
  c="$(dirname "${containerd_bin[$n]}")/ctr"
  printf '%s=%s ' "$n" "$c"
done | sed 's/ $//')'
EOF
mv "$CLUSTER_DIR/env.tmp" "$CLUSTER_DIR/env"
log "up in $((SECONDS - began)) s: source $CLUSTER_DIR/env"
