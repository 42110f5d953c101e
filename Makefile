# tote's verbs. `make help` lists them. Area-specific targets live in hack/make/*.mk.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# Node.js 24 comes from the `node` dev dependency, whatever node the machine has.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
export TOTE_CACHE ?= $(HOME)/.cache/tote
NODE := $(CURDIR)/node_modules/.bin/node
# The slow chaos tests (*.chaos.ts: the controller killed in each phase, the API server restarted) run too.
TEST_FILES ?= 'test/**/*.test.ts' 'test/chaos/*.chaos.ts'

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

.PHONY: deps
deps: node_modules/.package-lock.json ## Install everything the project needs on a fresh machine (apt, Go-built control plane, npm)
	bash hack/install-deps.sh

.PHONY: generate
generate: node_modules/.package-lock.json ## Regenerate generated/ and docs/api-reference.md from crds/ and proto/
	$(NODE) hack/generate.ts

.PHONY: verify-generated
verify-generated: node_modules/.package-lock.json ## Fail when generated/ is stale
	$(NODE) hack/generate.ts --check

.PHONY: lint
lint: node_modules/.package-lock.json verify-generated ## ESLint (incl. src/ layering), Prettier, stale generated code
	eslint --max-warnings=0 .
	prettier --check .

.PHONY: typecheck
typecheck: node_modules/.package-lock.json ## Type-check everything with tsc
	tsc -p tsconfig.json

.PHONY: build
build: node_modules/.package-lock.json ## Bundle tote and its dependencies into dist/tote.mjs (what the container image runs)
	$(NODE) hack/build.ts

.PHONY: test-unit
test-unit: node_modules/.package-lock.json ## Unit tests only (no processes started)
	$(NODE) --test --test-reporter=spec 'test/unit/**/*.test.ts'

.PHONY: test
test: deps lint typecheck ## Everything: set-up, lint, type-check, unit, integration and e2e tests
	$(NODE) --test --test-reporter=spec --test-timeout=900000 --test-global-setup=test/support/global-setup.ts $(TEST_FILES)

.PHONY: test-e2e
test-e2e: node_modules/.package-lock.json ## The whole-system stories only (test/e2e): tote's controller and agents on the local cluster
	$(NODE) --test --test-reporter=spec --test-timeout=900000 --test-global-setup=test/support/global-setup.ts 'test/e2e/*.test.ts'

.PHONY: format
format: node_modules/.package-lock.json ## Rewrite files with Prettier
	prettier --write .

-include hack/make/*.mk

.PHONY: demo
demo: deps ## The main job on a local cluster: a pod stuck on a lost image, rescued from another node, live
	$(NODE) hack/demo/demo.ts
