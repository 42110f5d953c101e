#!/usr/bin/env bash
# Makes tote's mTLS certificates and transfer-token keys with openssl, and the objects the manifests mount:
#   Secret tote-controller-tls       ca.crt, tls.crt, tls.key        URI SAN urn:tote:controller
#   Secret tote-ca                   ca.crt, tls.crt, tls.key: the CA; the controller signs agent certificates with it
#   ConfigMap tote-ca                ca.crt: the CA certificate only, which agents trust
#   Secret tote-transfer-signing     private.pem: Ed25519, the controller's only
#   ConfigMap tote-transfer-verify   public.pem: the agents'
# Agents need no file of their own: each requests its certificate from the controller (signer tote.dev/agent) with a
# key that never leaves its node (docs/security.md). Only with --nodes or --agent-certs (static agent certificates,
# for a cluster without the signer) also:
#   Secret tote-agent-tls            ca.crt, <node>.crt, <node>.key  URI SAN urn:tote:node:<node>, one pair per node
# The public key lives apart from the private one: a kubelet may read every key of a Secret that a pod on its node
# mounts any key of, so a node whose agent mounted public.pem from the signing Secret could mint tokens.
# Use it when cert-manager is not installed (with cert-manager: config/certmanager, plus this script's transfer keys).
#
# Re-runnable: an existing CA and signing key in --out are kept, so renewing the controller certificate or adding
# static agent certificates keeps everything issued valid. Private keys stay in --out (mode 0600); nothing is printed
# but paths.
#
# Usage: hack/certs/make-certs.sh [--out DIR] [--nodes "node-a node-b" | --agent-certs] [--ca-cert FILE --ca-key FILE]
#                                 [--namespace tote-system] [--days 365] [--agents-only] [--apply]
#   --nodes     static agent certificates for these nodes; --agent-certs: for every node (kubectl get nodes)
#   --ca-cert/--ca-key  sign with an existing CA (e.g. cert-manager's tote-ca Secret) instead of making one
#   --agents-only  leave the Secrets tote-controller-tls and tote-ca out of secrets.yaml (cert-manager issues them:
#               config/certmanager); pass cert-manager's CA with --ca-cert/--ca-key so the ConfigMap tote-ca holds it
#   --apply     kubectl apply the Secrets (else: write DIR/secrets.yaml only)
set -euo pipefail

out=./tote-certs
nodes=''
agent_certs=false
ca_cert=''
ca_key=''
namespace=tote-system
days=365
apply=false
agents_only=false
kubectl=${TOTE_KUBECTL:-kubectl}

while (($#)); do
  case $1 in
    --out) out=$2; shift 2 ;;
    --nodes) nodes=$2; agent_certs=true; shift 2 ;;
    --agent-certs) agent_certs=true; shift ;;
    --ca-cert) ca_cert=$2; shift 2 ;;
    --ca-key) ca_key=$2; shift 2 ;;
    --namespace) namespace=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    --apply) apply=true; shift ;;
    --agents-only) agents_only=true; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "make-certs.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

command -v openssl >/dev/null || { echo "make-certs.sh: openssl is required" >&2; exit 1; }
if $agent_certs && [[ -z $nodes ]]; then
  nodes=$("$kubectl" get nodes -o jsonpath='{.items[*].metadata.name}')
  [[ -n $nodes ]] || { echo "make-certs.sh: no nodes found; pass --nodes" >&2; exit 1; }
fi
if { [[ -n $ca_cert ]] && [[ -z $ca_key ]]; } || { [[ -z $ca_cert ]] && [[ -n $ca_key ]]; }; then
  echo "make-certs.sh: --ca-cert and --ca-key go together" >&2
  exit 2
fi

umask 077
mkdir -p "$out/agents" "$out/signing"

# The CA: given, kept from an earlier run, or new (ECDSA P-256, 10 years).
if [[ -n $ca_cert ]]; then
  cp "$ca_cert" "$out/ca.crt"
  cp "$ca_key" "$out/ca.key"
elif [[ ! -s $out/ca.crt || ! -s $out/ca.key ]]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$out/ca.key" -sha256 -days 3650 -subj '/O=tote/CN=tote CA' \
    -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' \
    -out "$out/ca.crt"
fi

# leaf NAME CN URI [DNS]: a key and a certificate for both TLS ends (agents are servers and clients; the controller
# is a client). Identity is the URI SAN (src/agentapi/identity.ts); the DNS name only matches the controller's
# --agent-tls-server-name default.
leaf() {
  local name=$1 cn=$2 uri=$3 dns=${4:-}
  local ext
  ext=$(mktemp)
  {
    echo 'basicConstraints=critical,CA:FALSE'
    echo 'keyUsage=critical,digitalSignature'
    echo 'extendedKeyUsage=serverAuth,clientAuth'
    echo "subjectAltName=URI:${uri}${dns:+,DNS:${dns}}"
  } >"$ext"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key" 2>/dev/null
  openssl req -new -key "$name.key" -subj "/O=tote/CN=${cn}" 2>/dev/null |
    openssl x509 -req -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial -sha256 -days "$days" \
      -extfile "$ext" -out "$name.crt" 2>/dev/null
  rm -f "$ext"
}

leaf "$out/controller" tote-controller urn:tote:controller
$agent_certs || nodes=''
for node in $nodes; do
  leaf "$out/agents/$node" "tote-agent $node" "urn:tote:node:$node" tote-agent
done

# Transfer-token keys (Ed25519, PKCS#8 / SPKI PEM as src/agentapi/token.ts reads them), kept across runs so tokens
# already handed out stay valid.
if [[ ! -s $out/signing/private.pem ]]; then
  openssl genpkey -algorithm ed25519 -out "$out/signing/private.pem"
fi
openssl pkey -in "$out/signing/private.pem" -pubout -out "$out/signing/public.pem"

b64() { base64 -w0 <"$1"; }
{
  echo '# Generated by hack/certs/make-certs.sh. Contains private keys: do not commit.'
  if ! $agents_only; then
    cat <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: tote-controller-tls
  namespace: $namespace
type: Opaque
data:
  ca.crt: $(b64 "$out/ca.crt")
  tls.crt: $(b64 "$out/controller.crt")
  tls.key: $(b64 "$out/controller.key")
---
YAML
  fi
  if ! $agents_only; then
    cat <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: tote-ca
  namespace: $namespace
type: kubernetes.io/tls
data:
  ca.crt: $(b64 "$out/ca.crt")
  tls.crt: $(b64 "$out/ca.crt")
  tls.key: $(b64 "$out/ca.key")
---
YAML
  fi
  cat <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: tote-ca
  namespace: $namespace
data:
  ca.crt: |
$(sed 's/^/    /' "$out/ca.crt")
---
YAML
  if $agent_certs; then
    cat <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: tote-agent-tls
  namespace: $namespace
type: Opaque
data:
  ca.crt: $(b64 "$out/ca.crt")
YAML
    for node in $nodes; do
      echo "  $node.crt: $(b64 "$out/agents/$node.crt")"
      echo "  $node.key: $(b64 "$out/agents/$node.key")"
    done
    echo '---'
  fi
  cat <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: tote-transfer-signing
  namespace: $namespace
type: Opaque
data:
  private.pem: $(b64 "$out/signing/private.pem")
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: tote-transfer-verify
  namespace: $namespace
data:
  public.pem: |
$(sed 's/^/    /' "$out/signing/public.pem")
YAML
} >"$out/secrets.yaml"

echo "wrote $out/secrets.yaml (CA $out/ca.crt; static agent certificates: ${nodes:-none, agents request theirs})"
if $apply; then
  "$kubectl" apply -f "$out/secrets.yaml"
fi
