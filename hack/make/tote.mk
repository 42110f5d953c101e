# tote on the local cluster: agents per node and the controller as processes (test/support/tote.ts), or with
# TOTE_INSTALL=manifests (config/default) or chart (config/helm/tote) as pods on real kubelets
# (test/support/tote-manifests.ts).

.PHONY: tote-up tote-down

tote-up: node_modules/.package-lock.json ## Start tote's agents and controller on the local cluster (starts it too; TOTE_INSTALL=manifests: as pods)
	@$(NODE) hack/tote/up.ts

tote-down: node_modules/.package-lock.json ## Stop tote's agents and controller (processes, or the pods of TOTE_INSTALL=manifests)
	@$(NODE) hack/tote/down.ts
