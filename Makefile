# The two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: demo test lint stop setup setup-dev bench fleet fleet-down

demo: setup
	scripts/demo.sh

test: setup-dev
	# The lint gate runs beside the tests, niced into the CPU they leave idle (about 1.5 core-minutes); a failing gate
	# fails `make test` all the same, its output printed after the tests'.
	# Two workers: one starts with the fleet's tests (tests/fleet, one converged fleet), the other with the other
	# Molecule scenarios, then both take the rest of the suite (tests/conftest.py); the 15 slowest tests with their times.
	@$(PYCACHE); log=$$(mktemp); (nice -n 10 sh -c '$(LINT)') >"$$log" 2>&1 & lint=$$!; \
	$(VENV)/python -m pytest tests -n 2 --dist loadfile --no-loadscope-reorder --durations=15; tests=$$?; \
	wait $$lint; linted=$$?; echo "--- make lint, run beside the tests: exit $$linted ---"; cat "$$log"; rm -f "$$log"; \
	[ $$tests -eq 0 ] && [ $$linted -eq 0 ]

# The tests' and the lint's Python processes keep the bytecode they compile in the virtualenv, written once on first
# import (scripts/setup.sh installs the dev stack without compiling every file; tests/conftest.py does the same for
# a pytest started by hand), wherever PYTHONDONTWRITEBYTECODE is set.
PYCACHE := export PYTHONPYCACHEPREFIX="$(CURDIR)/.venv/pycache"; unset PYTHONDONTWRITEBYTECODE

# The gate CI runs with the tests: ruff, mypy on app/, yamllint, ansible-lint (production profile).
LINT := $(VENV)/ruff check . && $(VENV)/mypy && $(VENV)/yamllint --strict . && \
	PATH="$(CURDIR)/.venv/bin:$$PATH" ansible-lint --profile production  # config: .ansible-lint, whole repository
lint: setup-dev
	$(PYCACHE); $(LINT)

stop:
	scripts/demo.sh stop

# The whole fleet on local podman hosts (Molecule's default scenario), left running; docs/operations/deploy.md.
# Under the machine-wide lock of the scenario that the tests take too (tests/molecule/conftest.py).
# Its state (inventory, ansible.cfg) lives in a folder of this checkout's own, where `AEGIS_FLEET_REUSE=1 pytest
# tests/fleet` finds it (tests/molecule/conftest.py: fleet_state_dir).
FLEET_LOCK := /run/lock/aegis-molecule-default.lock
FLEET_ENV := PATH="$(CURDIR)/.venv/bin:$$PATH" \
	MOLECULE_EPHEMERAL_DIRECTORY=$(HOME)/.cache/aegis/fleet-$(shell printf %s "$(CURDIR)" | sha1sum | cut -c1-8)
# prepare --force copies the checkout again: a changed app/ deploys as a new release (molecule/default/prepare.yml).
fleet: setup-dev
	$(PYCACHE); $(FLEET_ENV) flock $(FLEET_LOCK) sh -c \
	  'molecule create -s default && molecule prepare --force -s default && molecule converge -s default'

fleet-down: setup-dev
	$(PYCACHE); $(FLEET_ENV) flock $(FLEET_LOCK) molecule destroy -s default

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
