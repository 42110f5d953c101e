# tote's own processes on the local cluster (test/support/tote.ts): agents per node and the controller.

.PHONY: tote-up tote-down

tote-up: node_modules/.package-lock.json ## Start tote's agents and controller on the local cluster (starts the cluster too)
	@$(NODE) hack/tote/up.ts

tote-down: node_modules/.package-lock.json ## Stop tote's agents and controller
	@$(NODE) hack/tote/down.ts
