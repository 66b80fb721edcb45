# The README's commands. Each target installs what it needs first (scripts/setup.sh is idempotent).
PY := .venv/bin/python

.PHONY: setup demo demo-cluster test test-cluster lint bench bench-smoke

setup:
	@scripts/setup.sh

demo: setup
	$(PY) -m harness.demo

demo-cluster: setup
	$(PY) -m harness.demo --cluster

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -v

test-cluster: setup
	$(PY) -m pytest -v -m cluster tests/test_cluster.py

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) -m bench

bench-smoke: setup
	$(PY) -m bench --smoke
