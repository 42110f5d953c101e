#!/usr/bin/env bash
# Builds tote's image and pushes it to your registry, tagged with the release version (never latest), and prints the
# digest to pin (Helm: image.digest; kustomize: images[].digest).
#
# Usage: hack/image/publish.sh REPOSITORY          e.g. registry.example.com/platform/tote
# Env:   TOTE_IMAGE_BUILDER  docker | podman | buildah | offline  (default: the first of docker, podman, buildah found;
#                            offline when none is: hack/image/build-offline.sh's OCI layout, pushed with skopeo)
#        TOTE_IMAGE_TAG      default v<version in package.json>, the tag config/ and the chart name
#        TOTE_REGISTRY_CERT_DIR  offline builder: a directory with the registry's ca.crt (skopeo --dest-cert-dir)
#        REGISTRY_AUTH_FILE  offline builder: credentials as `skopeo login` / `podman login` write them
# The docker/podman/buildah paths run the Dockerfile (a release build: node:24-bookworm-slim, npm ci, distroless) and
# log in as those tools do (`docker login`). The offline path needs no daemon and no base image: see build-offline.sh
# for what it proves and what it does not.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
repository=${1:?usage: hack/image/publish.sh REPOSITORY (e.g. registry.example.com/platform/tote)}
version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$root/package.json")
tag=${TOTE_IMAGE_TAG:-v$version}
[[ $tag != latest ]] || { echo "publish: pin a version, not latest" >&2; exit 2; }
image=$repository:$tag

builder=${TOTE_IMAGE_BUILDER:-}
if [[ -z $builder ]]; then
  for candidate in docker podman buildah; do
    if command -v "$candidate" >/dev/null; then builder=$candidate; break; fi
  done
  builder=${builder:-offline}
fi
echo "publish: $image with $builder" >&2

digestfile=$(mktemp)
trap 'rm -f "$digestfile"' EXIT
case $builder in
  docker | podman)
    "$builder" build -t "$image" "$root"
    "$builder" push "$image"
    "$builder" image inspect --format '{{index .RepoDigests 0}}' "$image" | sed 's/.*@//' >"$digestfile"
    ;;
  buildah)
    buildah bud -t "$image" "$root"
    buildah push --digestfile "$digestfile" "$image" "docker://$image"
    ;;
  offline)
    layout=$(mktemp -d)
    trap 'rm -f "$digestfile"; rm -rf "$layout"' EXIT
    TOTE_IMAGE_RUN=${TOTE_IMAGE_RUN:-0} "$root/hack/image/build-offline.sh" "$layout" >&2
    tls=()
    if [[ -n ${TOTE_REGISTRY_CERT_DIR:-} ]]; then tls=(--dest-cert-dir "$TOTE_REGISTRY_CERT_DIR"); fi
    skopeo copy --digestfile "$digestfile" "${tls[@]}" "oci:$layout:offline" "docker://$image" >&2
    ;;
  *)
    echo "publish: unknown TOTE_IMAGE_BUILDER=$builder (docker, podman, buildah or offline)" >&2
    exit 2
    ;;
esac
echo "$image@$(cat "$digestfile")"
