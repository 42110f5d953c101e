# Stories on real kubelets (test/e2e/real-*.test.ts, docs/cluster.md "Real nodes"): they start a real-node cluster of
# their own (TOTE_REAL_CLUSTER_DIR, default /tmp/tote-real; test/support/real-cluster.ts); the install story
# (real-install.test.ts: tote from config/default as pods) and the lifecycle test use <dir>-install and <dir>-lifecycle
# and take those down when they end. `make test` and `make test-e2e` run them too (their globs cover test/e2e).

.PHONY: test-real real-down

test-real: deps ## Only the stories on real kubelets (node-a on containerd 1.6, node-b and node-c on 2.x)
	$(NODE) --test --test-reporter=spec --test-concurrency=1 --test-timeout=900000 'test/e2e/real-*.test.ts'

real-down: node_modules/.package-lock.json ## Stop tote and the real-kubelet stories' clusters
	TOTE_CLUSTER_DIR=$${TOTE_REAL_CLUSTER_DIR:-/tmp/tote-real} $(NODE) hack/tote/down.ts
	for d in '' -install -lifecycle; do TOTE_CLUSTER_DIR=$${TOTE_REAL_CLUSTER_DIR:-/tmp/tote-real}$$d hack/cluster/down.sh; done
