# The two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: demo test stop setup setup-dev bench

demo: setup
	scripts/demo.sh

test: setup-dev
	$(VENV)/python -m pytest tests

stop:
	scripts/demo.sh stop

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
