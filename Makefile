# The two commands a newcomer needs: `make demo` and `make test`. Both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup build-web demo test lint typecheck test-py test-js bench clean

setup:
	@scripts/setup.sh

# The browser library and its one-file bundle, copied into the demo page.
build-web: setup
	npm run --silent -w js-client build
	npm run --silent -w web-demo build

# `make demo DEMO_ARGS="--port 9000 --token-ttl 120"` passes options to the launcher.
demo: build-web
	@$(PY) -m glueberry_demo $(DEMO_ARGS)

test: setup lint typecheck build-web test-js test-py

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy examples
	npm run --silent typecheck --workspaces --if-present

test-js:
	npm test --workspaces --if-present
	npm run --silent -w js-client size

test-py:
	$(PY) -m pytest

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) node_modules build .mypy_cache .pytest_cache .ruff_cache
