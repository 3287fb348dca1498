# The two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: demo test lint stop setup setup-dev bench fleet fleet-down

demo: setup
	scripts/demo.sh

test: setup-dev
	$(MAKE) --no-print-directory lint
	# Two workers: one starts with the fleet's Molecule scenario, the other with the other scenarios, then both
	# take the rest of the suite (tests/conftest.py); the 15 slowest tests with their times.
	$(VENV)/python -m pytest tests -n 2 --dist loadfile --no-loadscope-reorder --durations=15

# The gate CI runs before the tests: ruff, mypy on app/, yamllint, ansible-lint (production profile).
lint: setup-dev
	$(VENV)/ruff check .
	$(VENV)/mypy
	$(VENV)/yamllint --strict .
	PATH="$(CURDIR)/.venv/bin:$$PATH" ansible-lint --profile production  # config: .ansible-lint, whole repository

stop:
	scripts/demo.sh stop

# The whole fleet on local podman hosts (Molecule's default scenario), left running; docs/operations/deploy.md.
# Under the machine-wide lock of the scenario that the tests take too (tests/molecule/conftest.py).
FLEET_LOCK := /run/lock/aegis-molecule-default.lock
fleet: setup-dev
	PATH="$(CURDIR)/.venv/bin:$$PATH" flock $(FLEET_LOCK) molecule converge -s default

fleet-down: setup-dev
	PATH="$(CURDIR)/.venv/bin:$$PATH" flock $(FLEET_LOCK) molecule destroy -s default

setup:
	scripts/setup.sh

setup-dev:
	scripts/setup.sh --dev

# Benchmarks print JSON; method and recorded results: bench/RESULTS.md.
bench: setup-dev
	$(VENV)/python -m bench.bench_chat
	$(VENV)/python -m bench.bench_ingest
	$(VENV)/python -m bench.bench_health_check
	$(VENV)/python -m bench.bench_restore
	$(VENV)/python -m bench.bench_memory
	$(VENV)/python -m bench.bench_reliability
