# Fault injection and hostile input (docs/reliability.md). Chaos tests run on their own cluster, TOTE_CHAOS_CLUSTER_DIR
# (default /tmp/tote-chaos), started on free ports when it is not up; files run one at a time (they also take a lock).
# test/chaos/*.test.ts and *.chaos.ts are part of `make test` too (its TEST_FILES) and must stay within its CI budget;
# the slow ones are named *.chaos.ts (controller killed in every phase, kube-apiserver restarted).

.PHONY: test-chaos test-hostile chaos-down

test-chaos: node_modules/.package-lock.json ## All chaos tests (agents, controller, containerd, apiserver, registries killed) on /tmp/tote-chaos
	$(NODE) --test --test-reporter=spec --test-concurrency=1 'test/chaos/*.test.ts' 'test/chaos/*.chaos.ts'

test-hostile: node_modules/.package-lock.json ## Hostile-input tests (tokens, TLS, digests, manifests, refs, policies)
	$(NODE) --test --test-reporter=spec --test-concurrency=1 --test-global-setup=test/support/global-setup.ts 'test/hostile/*.test.ts'

chaos-down: node_modules/.package-lock.json ## Stop tote and the chaos cluster
	TOTE_CLUSTER_DIR=$${TOTE_CHAOS_CLUSTER_DIR:-/tmp/tote-chaos} $(NODE) hack/tote/down.ts
	TOTE_CLUSTER_DIR=$${TOTE_CHAOS_CLUSTER_DIR:-/tmp/tote-chaos} hack/cluster/down.sh
