# The local test cluster (docs/cluster.md): control plane built from Go modules, containerd nodes, registries.

.PHONY: k8s-binaries cluster-up cluster-down cluster-env cluster-status

k8s-binaries: ## Build (or find cached) kube-apiserver, controller-manager, scheduler, kubectl, etcd, kwok
	@hack/k8s/build.sh

cluster-up: ## Start the local cluster (idempotent; TOTE_NODES, TOTE_CLUSTER_DIR)
	@hack/cluster/up.sh

cluster-down: ## Stop every cluster process, unmount, remove the state directory
	@hack/cluster/down.sh

cluster-env: ## Print the path of the cluster's sourceable env file
	@hack/cluster/env.sh

cluster-status: ## Show which cluster components are running
	@hack/cluster/status.sh
