# The two commands a newcomer needs: `make demo` and `make test`. Both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint typecheck test-py test-js bench clean

setup:
	@scripts/setup.sh

demo: setup
	@$(PY) -m glueberry_demo

test: setup lint typecheck test-js test-py

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy
	npm run --silent typecheck --workspaces --if-present

test-js:
	npm test --workspaces --if-present

test-py:
	$(PY) -m pytest

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) node_modules build .mypy_cache .pytest_cache .ruff_cache
