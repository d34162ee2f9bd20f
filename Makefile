# MeshMart developer commands. `make run` and `make test` are all a newcomer needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

SERVICES := user product order trade data
PACKAGES := meshmart_common meshmart_devstack $(addsuffix _service,$(SERVICES))
TEST_DIRS := libs/common/tests libs/devstack/tests $(addsuffix /tests,$(addprefix services/,$(SERVICES))) tests

# Use uv from PATH; otherwise install it once into .tools/ with the system Python.
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
PYTEST_ARGS ?=

.PHONY: help install run migrate seed lint fmt typecheck test test-fast clean rocketmq

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv

.venv/.installed: uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml) | $(UV)
	$(UV) sync --locked
	@touch $@

install: .venv/.installed ## create .venv from the lock file

run: install ## migrate, seed and start all five services on the embedded defaults
	$(UV) run --no-sync python -m meshmart_devstack run

migrate: install ## apply every service's migrations
	$(UV) run --no-sync python -m meshmart_devstack migrate

seed: install ## insert demo data (idempotent)
	$(UV) run --no-sync python -m meshmart_devstack seed

rocketmq: install ## run a real RocketMQ 5 (name server + proxy, ports 9876/8081) until Ctrl-C
	$(UV) run --no-sync python -m meshmart_devstack.rocketmq run

# The whole platform in Docker (README "Run the full platform with Docker").
# COMPOSE_FILE=docker-compose.yml:docker-compose.replicas.yml runs two product replicas.
.PHONY: up down
COMPOSE ?= docker compose

up: ## build the images and start the platform in Docker (gateway http://127.0.0.1:8080)
	$(COMPOSE) up --detach --build
	@echo "MeshMart is starting in Docker (the first start takes a few minutes):"
	@echo "  gateway     http://127.0.0.1:8080  (API docs: /services/<name>/docs)"
	@echo "  Jaeger      http://127.0.0.1:16686"
	@echo "  Prometheus  http://127.0.0.1:9090"
	@echo "  Consul      http://127.0.0.1:8500/ui"
	@echo "Watch it come up: $(COMPOSE) ps; stop it: make down"

down: ## stop the Docker platform (its data stays; `docker compose down -v` deletes it)
	$(COMPOSE) down --remove-orphans

# Performance: `make bench` measures a fresh stack of its own (README "Performance");
# `make load` runs the Locust shoppers against a running one (loadgen/README.md).
BENCH_QUICK ?=
SOAK ?=
BENCH_BACKEND ?= local
LOAD_USERS ?= 20
LOAD_SPAWN_RATE ?= 2
LOAD_DURATION ?= 2m

.PHONY: bench load

bench: install ## measure a fresh stack into var/bench/ (BENCH_QUICK=1, SOAK=1, BENCH_BACKEND=rocketmq)
	BENCH_QUICK=$(BENCH_QUICK) SOAK=$(SOAK) BENCH_BACKEND=$(BENCH_BACKEND) \
		$(UV) run --no-sync python -m meshmart_devstack.bench run --out var/bench

load: install ## Locust shoppers, headless, against `make run` or MESHMART_GATEWAY (LOAD_USERS=, LOAD_DURATION=)
	@mkdir -p var/load
	$(UV) run --no-sync locust -f loadgen/locustfile.py --headless \
		--users $(LOAD_USERS) --spawn-rate $(LOAD_SPAWN_RATE) --run-time $(LOAD_DURATION) \
		--csv var/load/locust --html var/load/report.html --only-summary

fmt: install ## format and autofix
	$(UV) run --no-sync ruff format .
	$(UV) run --no-sync ruff check --fix .

lint: install ## ruff and mypy (strict)
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .
	$(UV) run --no-sync mypy $(addprefix -p ,$(PACKAGES))
	@set -e; for d in $(TEST_DIRS); do \
		if ls $$d/*.py >/dev/null 2>&1; then $(UV) run --no-sync mypy $$d; fi; \
	done

typecheck: lint

test: lint ## lint, type check and every test
	$(UV) run --no-sync pytest $(PYTEST_ARGS)

test-fast: install ## tests on SQLite only, no e2e
	$(UV) run --no-sync pytest -k "not mariadb" -m "not e2e" $(PYTEST_ARGS)

clean: ## remove generated data (var/) and caches
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
