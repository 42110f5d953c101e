# Deployment assets (config/, Dockerfile): see docs/operations.md.

.PHONY: image-offline manifests-check

image-offline: ## Assemble the tote image as an OCI layout without a daemon or registry, check it with skopeo, run it with runc
	@hack/image/build-offline.sh

manifests-check: ## Render config/default and dry-run it against the local cluster's API server
	@source "$$(hack/cluster/env.sh)" && "$$TOTE_KUBECTL" apply -k config/default --dry-run=server
