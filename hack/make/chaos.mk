# Fault injection and hostile input (docs/reliability.md). Chaos tests run on their own cluster, TOTE_CHAOS_CLUSTER_DIR
# (default /tmp/tote-chaos), started on free ports when it is not up; files run one at a time (they also take a lock).

.PHONY: test-chaos test-hostile chaos-down

test-chaos: node_modules/.package-lock.json ## Chaos tests (agents, controller, containerd, apiserver, registries killed) on /tmp/tote-chaos
	$(NODE) --test --test-reporter=spec --test-concurrency=1 'test/chaos/*.test.ts'

test-hostile: node_modules/.package-lock.json ## Hostile-input tests (tokens, TLS, digests, manifests, refs, policies)
	$(NODE) --test --test-reporter=spec --test-concurrency=1 --test-global-setup=test/support/global-setup.ts 'test/hostile/*.test.ts'

chaos-down: node_modules/.package-lock.json ## Stop tote and the chaos cluster
	TOTE_CLUSTER_DIR=$${TOTE_CHAOS_CLUSTER_DIR:-/tmp/tote-chaos} $(NODE) hack/tote/down.ts
	TOTE_CLUSTER_DIR=$${TOTE_CHAOS_CLUSTER_DIR:-/tmp/tote-chaos} hack/cluster/down.sh
