#!/usr/bin/env bash
# Builds tote's container image without a daemon, a registry or base images: an OCI image layout assembled from
# parts this machine already has, then checked with skopeo and run with runc.
#
#   layer: /app/dist/tote.mjs (tote and its dependencies bundled by hack/build.ts, no node_modules),
#          /nodejs/bin/node (the Node.js 24 binary of the `node` dev dependency) and the shared libraries it links
#          (copied from this host, Debian 12 like distroless' nodejs24-debian12), /etc/passwd+group with nonroot 65532
#   config: the Dockerfile's ENTRYPOINT, USER, ENV, ports
#
# It proves the runtime layout works (entrypoint, the bundle, non-root, read-only root filesystem);
# it does not prove the Dockerfile's build stage (that needs node:24-bookworm-slim and the npm registry), and the
# image carries this host's glibc rather than distroless'. Use the Dockerfile for releases.
#
# Usage: hack/image/build-offline.sh [OUT_DIR]   (default: $TOTE_CACHE/image, tag tote:offline)
# Env:   TOTE_IMAGE_RUN=0 skips the runc smoke run (needs root and runc).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-${TOTE_CACHE:-$HOME/.cache/tote}/image}
node_bin=$root/node_modules/node/bin/node
[[ -x $node_bin ]] || { echo "build-offline: $node_bin missing (npm ci first)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs/app" "$rootfs/nodejs/bin" "$rootfs/etc" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"

echo "build-offline: bundling" >&2
"$node_bin" "$root/hack/build.ts" --outdir "$rootfs/app/dist" >&2

echo "build-offline: node and its libraries" >&2
cp "$node_bin" "$rootfs/nodejs/bin/node"
strip --strip-debug "$rootfs/nodejs/bin/node" 2>/dev/null || true
for lib in $(ldd "$node_bin" | grep -oE '/[^ ]+\.so[^ ]*'); do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"

echo "build-offline: OCI layout" >&2
rm -rf "$out"
mkdir -p "$out/blobs/sha256"
blob() { # FILE -> prints sha256 hex, moves the file into blobs/
  local hex
  hex=$(sha256sum "$1" | cut -d' ' -f1)
  mv "$1" "$out/blobs/sha256/$hex"
  echo "$hex"
}
size() { stat -c %s "$out/blobs/sha256/$1"; }

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf "$work/layer.tar" .
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n -6 "$work/layer.tar"
layer=$(blob "$work/layer.tar.gz")

cat >"$work/config.json" <<JSON
{"architecture":"amd64","os":"linux",
 "config":{"User":"65532:65532","WorkingDir":"/app",
  "Env":["PATH=/nodejs/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","NODE_ENV=production"],
  "Entrypoint":["/nodejs/bin/node","/app/dist/tote.mjs"],"Cmd":["--help"],
  "ExposedPorts":{"8080/tcp":{},"8081/tcp":{},"9443/tcp":{}},
  "Labels":{"org.opencontainers.image.title":"tote","org.opencontainers.image.description":"offline build (hack/image/build-offline.sh)"}},
 "rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},
 "history":[{"created_by":"hack/image/build-offline.sh"}]}
JSON
config=$(blob "$work/config.json")

cat >"$work/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
 "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config","size":$(size "$config")},
 "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:$layer","size":$(size "$layer")}]}
JSON
manifest=$(blob "$work/manifest.json")
echo '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"
cat >"$out/index.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
 "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest","size":$(size "$manifest"),
  "annotations":{"org.opencontainers.image.ref.name":"offline"}}]}
JSON

echo "build-offline: checking with skopeo" >&2
skopeo inspect "oci:$out:offline" >/dev/null
echo "image: oci:$out:offline  manifest sha256:$manifest  layer $(($(size "$layer") / 1024 / 1024)) MiB compressed"

# Smoke run as the manifests run it: uid 65532, read-only root, no capabilities, no network. Unpacks the layer from
# the layout (not the staging rootfs), so what runs is what the image holds.
if [[ ${TOTE_IMAGE_RUN:-1} != 0 ]] && command -v runc >/dev/null && [[ $(id -u) == 0 ]]; then
  bundle=$work/bundle
  mkdir -p "$bundle/rootfs"
  tar -xzf "$out/blobs/sha256/$layer" -C "$bundle/rootfs"
  run() { # ARGS... : runs /nodejs/bin/node ARGS in the image
    local args
    args=$(printf '"%s",' "$@")
    cat >"$bundle/config.json" <<JSON
{"ociVersion":"1.0.2","process":{"user":{"uid":65532,"gid":65532},"args":["/nodejs/bin/node",${args%,}],
  "env":["PATH=/nodejs/bin:/usr/bin:/bin","NODE_ENV=production"],"cwd":"/app","noNewPrivileges":true,
  "capabilities":{"bounding":[],"effective":[],"permitted":[]}},
 "root":{"path":"rootfs","readonly":true},
 "mounts":[{"destination":"/proc","type":"proc","source":"proc"},{"destination":"/tmp","type":"tmpfs","source":"tmpfs","options":["nosuid","nodev","size=16m"]}],
 "linux":{"namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"uts"},{"type":"mount"},{"type":"network"}]}}
JSON
    runc --root "$work/runc" run --bundle "$bundle" "tote-offline-$$"
  }
  echo "build-offline: running the image with runc" >&2
  run -e "console.log('node', process.version, 'uid', process.getuid())"
  run /app/dist/tote.mjs --help
fi
