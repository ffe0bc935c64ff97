# TIKETI-RS commands. `make run` and `make test` do all set-up on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PORT ?= 3001
DEPS = scripts/deps.sh

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

deps: ## install (apt, if missing) and start project-local PostgreSQL and Redis under .dev/
	@$(DEPS) start >/dev/null

run: deps ## run the service on :3001 in dev mode with demo data (admin@tiketi.gg / admin123)
	@eval "$$($(DEPS) env)"; \
	TIKETI_DEV=1 TIKETI_MIGRATE=1 PORT=$(PORT) LOG_FORMAT=$${LOG_FORMAT:-pretty} UPLOAD_DIR=.dev/uploads \
	cargo run --release -p tiketi-service

test: deps ## run every test (unit, API against real PostgreSQL and Redis)
	@scripts/test.sh

chaos: deps ## fault injection on three real replicas (replica SIGKILL, Redis restart); prints target/chaos-report.md
	@scripts/chaos.sh

bench: deps ## benchmarks against docs/design.md §6 and a Node socket.io reference (≈10 min; BENCH_ARGS="--clients 19000")
	@scripts/bench.sh $(BENCH_ARGS)

e2e: ## e2e on a real Kubernetes API server (local control plane built with Go; E2E_REAL_NODE=1: real pods on a kubelet node, root; E2E_CLUSTER=existing for kind)
	@e2e/run.sh

rehearsal: ## full-dress sale opening on the real node (root; ≈3 min warm; REHEARSAL_USERS=1000): report in target/rehearsal-report.md
	@flock -o /tmp/tiketi-cluster.lock env E2E_REAL_NODE=1 e2e/run.sh rehearsal

crd: ## regenerate the TicketEvent CRD yaml (and the chart's copy)
	cargo run -q -p tiketi-crds --bin crdgen > crds/ticketevent.yaml
	cp crds/ticketevent.yaml charts/tiketi/crds/ticketevent.yaml

check: ## the static checks exactly as CI runs them: format, clippy, docs, generated artefacts, dependencies, scripts
	@scripts/check.sh

lint: check

stop: ## stop the local PostgreSQL and Redis
	@$(DEPS) stop

.PHONY: help deps run test chaos bench e2e rehearsal crd check lint stop
