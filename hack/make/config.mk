# Deployment assets (config/, Dockerfile): see docs/operations.md.

.PHONY: image-offline image-publish image-load-nodes krew-archive manifests-check

image-offline: ## Assemble the tote image as an OCI layout without a daemon or registry, check it with skopeo, run it with runc
	@hack/image/build-offline.sh

image-publish: node_modules/.package-lock.json ## Build the image and push it as IMAGE:v<version> (TOTE_IMAGE_BUILDER=docker|podman|buildah|offline)
	@hack/image/publish.sh "$${IMAGE:?set IMAGE=registry.example.com/platform/tote}"

image-load-nodes: node_modules/.package-lock.json ## Load the offline image into every local cluster node's containerd as ghcr.io/tote-dev/tote:v<version>
	@hack/image/load-nodes.sh

krew-archive: node_modules/.package-lock.json ## The kubectl-tote archive and its krew manifest (config/krew) in dist/krew
	@hack/krew/archive.sh

manifests-check: ## Render config/default and dry-run it against the local cluster's API server
	@source "$$(hack/cluster/env.sh)" && "$$TOTE_KUBECTL" apply -k config/default --dry-run=server
