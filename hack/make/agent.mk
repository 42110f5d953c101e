# The node agent: containerd 2.x for the conformance matrix, the agent's tests, the transfer benchmark (docs/agent.md).

.PHONY: containerd-v2 test-agent bench-transfer

containerd-v2: ## Build (or find cached) containerd 2.x, its runc shim and ctr from the Go module proxy
	@hack/containerd/build.sh

test-agent: node_modules/.package-lock.json ## Agent and containerd adapter tests (unit + integration against real containerd 1.6 and 2.x)
	$(NODE) --test --test-reporter=spec --test-concurrency=1 'test/unit/agent/*.test.ts' 'test/unit/containerd/*.test.ts' 'test/integration/agent/*.test.ts'

bench-transfer: node_modules/.package-lock.json ## Benchmark a 1 GiB node-to-node transfer against ctr export|import and a raw copy
	$(NODE) bench/transfer/run.ts
