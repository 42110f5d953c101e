# Benchmarks (docs/benchmarks.md). They run on their own cluster, never on the one tests share: TOTE_CLUSTER_DIR
# defaults to /tmp/tote-bench here. Each prints its figures, its last stdout line one JSON object, also written to
# bench/results/<name>.json. bench-transfer (two containerd daemons of its own, no cluster) is in agent.mk.

.PHONY: bench-recovery bench-scale bench-inventory bench-fanout bench-protection bench-footprint

BENCH_CLUSTER_DIR ?= /tmp/tote-bench
# Nodes of the benchmark cluster: node-a as the source, node-b..node-k as targets (fan-out uses ten of them).
BENCH_NODES ?= node-a node-b node-c node-d node-e node-f node-g node-h node-i node-j node-k
# tote runs as shipped: the bundle the image runs (make build) with the controller's NODE_OPTIONS and
# MALLOC_ARENA_MAX (config/manager/deployment.yaml), so its memory and start-up are the shipped ones. Agents started by
# tote.ts (bench-recovery, bench-fanout) get the same Node flags; the DaemonSet has the heap limit without the
# semi-space cap, and glibc's default arenas.
BENCH_ENV = TOTE_CLUSTER_DIR=$(BENCH_CLUSTER_DIR) TOTE_NODES="$(BENCH_NODES)" TOTE_ENTRYPOINT=$(CURDIR)/dist/tote.mjs \
	TOTE_NODE_FLAGS="--max-old-space-size=192 --max-semi-space-size=2" TOTE_CONTROLLER_ENV="MALLOC_ARENA_MAX=2"

bench-recovery: node_modules/.package-lock.json build ## Time from a pod's first ErrImagePull to Running with tote (10 MB, 100 MB, 1 GiB), and without
	$(BENCH_ENV) $(NODE) bench/recovery/run.ts

bench-scale: node_modules/.package-lock.json build ## Controller at scale: kwok, 500 nodes, 5,000 pods, 200 failing across 20 images
	$(BENCH_ENV) $(NODE) bench/scale/run.ts

bench-inventory: node_modules/.package-lock.json ## Agent ListImages / ResolveTag latency with 50, 500 and 2,000 images on a node
	$(NODE) bench/inventory/run.ts

# The wide fan-out: bench-scale's kwok nodes with memory-backed agents, one image on one of them and a failing pod on
# every other, reported as fanout-wide (the schedule at a node count real containerd daemons could not reach here). The
# policy allows its maximum of 64 transfers at once, so past 64 holders the slots, not the holders, bound a round.
FANOUT_WIDE_NODES ?= 500

bench-fanout: node_modules/.package-lock.json build ## One image needed on ten nodes at once (real containerd), then on FANOUT_WIDE_NODES kwok nodes: time, source reads, rounds
	$(BENCH_ENV) $(NODE) bench/fanout/run.ts
	$(BENCH_ENV) TOTE_BENCH_REPORT=fanout-wide TOTE_BENCH_NODES=$(FANOUT_WIDE_NODES) TOTE_BENCH_PODS=$(FANOUT_WIDE_NODES) \
		TOTE_BENCH_FAILING=$(FANOUT_WIDE_NODES) TOTE_BENCH_IMAGES=1 TOTE_BENCH_IDLE_SECONDS=0 $(NODE) bench/scale/run.ts

bench-protection: node_modules/.package-lock.json build ## Protection: cordon → last endangered image copied, registry stopped → minimum copies
	$(BENCH_ENV) $(NODE) bench/protection/run.ts

bench-footprint: node_modules/.package-lock.json build ## Resident memory of the shipped agent and controller: idle, and after one salvage
	$(BENCH_ENV) $(NODE) bench/footprint/run.ts
