# odoo-db-operator — see README.md. Two commands: `make setup && make dev`, and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: manifests setup venv system-packages k8s-binaries odoo dev run test lint unit integration e2e e2e-kind bench clean

setup: system-packages venv k8s-binaries odoo ## everything a fresh machine needs (idempotent, cached)

system-packages:
	@if [ ! -x /usr/lib/postgresql/15/bin/postgres ] || ! command -v openssl >/dev/null || [ ! -x /usr/sbin/dnsmasq ] \
	    || ! command -v ip >/dev/null || [ ! -x /usr/bin/chromium ]; then \
	  echo "installing PostgreSQL 15, openssl, dnsmasq (a real DNS server for the tests), iproute2 (pod networks) and chromium (screenshots) from Debian's packages"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql-15 postgresql-client-15 openssl dnsmasq-base iproute2 chromium >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

k8s-binaries:
	VENV=$(VENV) bash hack/setup-k8s.sh

odoo: ## a real Odoo (source + virtualenv with its requirements) in .cache/odoo/current; ODOO_SOURCE=tarball|folder
	bash hack/setup-odoo.sh

dev: ## local control plane + PostgreSQL + the operator in the foreground
	$(PY) -m odoo_operator.devtools.dev

run: ## the operator against the current kubeconfig context
	$(PY) -m odoo_operator

lint: ## ruff, mypy, and the package's layering (hack/check_layers.py)
	$(VENV)/bin/ruff check operator tests bench hack/check_layers.py
	$(VENV)/bin/mypy
	$(PY) hack/check_layers.py

unit:
	$(PY) -m pytest -m "not integration and not e2e" $(PYTEST_ARGS)

integration:
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

e2e:
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

test: lint ## lint, then unit + integration + end-to-end tests in one pytest run
	$(PY) -m pytest $(PYTEST_ARGS)

e2e-kind: ## the same end-to-end suite on a kind cluster (needs Docker and kind)
	kind create cluster --name odoo-e2e --wait 120s
	kind get kubeconfig --name odoo-e2e > .cache/kind-kubeconfig
	ODOO_TEST_KUBECONFIG=$(CURDIR)/.cache/kind-kubeconfig $(PY) -m pytest -m e2e $(PYTEST_ARGS); \
	  rc=$$?; kind delete cluster --name odoo-e2e; exit $$rc

bench: ## benchmarks (not part of `make test`); results in BENCHMARKS.md
	$(PY) bench/bench_create.py --count 200 --output BENCHMARKS.md
	$(PY) bench/bench_duplicate.py --output BENCHMARKS.md
	$(PY) bench/bench_backup.py --output BENCHMARKS.md
	$(PY) bench/bench_domains.py --domains 100 --output BENCHMARKS.md
	$(PY) bench/bench_odoo.py --count 20 --output BENCHMARKS.md
	$(PY) bench/bench_upgrade.py --output BENCHMARKS.md
	$(PY) bench/bench_move.py --output BENCHMARKS.md
	$(PY) bench/bench_peers.py --count 200 --output BENCHMARKS.md

manifests: ## regenerate charts/odoo-db-operator/crds and manifests/install from crds/ and the chart
	bash hack/generate-manifests.sh

clean:
	rm -rf .cache/dev .pytest_cache .mypy_cache .ruff_cache
