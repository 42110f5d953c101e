# The e2e tier (test/e2e/): whole stories on real kubelets, in a cluster of its own (TOTE_E2E_CLUSTER_DIR, default
# /tmp/tote-e2e; test/support/real-cluster.ts starts it). `make test` runs these files too (its glob covers test/e2e).

.PHONY: test-e2e e2e-down

test-e2e: deps ## The e2e tier only, on real kubelets (node-a containerd 1.6, node-b/c 2.x)
	$(NODE) --test --test-reporter=spec --test-concurrency=1 --test-timeout=900000 'test/e2e/*.test.ts'

e2e-down: node_modules/.package-lock.json ## Stop tote and the e2e cluster
	TOTE_CLUSTER_DIR=$${TOTE_E2E_CLUSTER_DIR:-/tmp/tote-e2e} $(NODE) hack/tote/down.ts
	TOTE_CLUSTER_DIR=$${TOTE_E2E_CLUSTER_DIR:-/tmp/tote-e2e} hack/cluster/down.sh
