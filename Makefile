# One entry point for every check; .ci/run calls `make lint` and then the README's test command.
PY ?= .venv/bin/python
BIN ?= $(dir $(PY))

.PHONY: check lint test fmt demo

check: lint test

lint:
	$(BIN)ruff format --check .
	$(BIN)ruff check .
	$(BIN)mypy
	$(BIN)lint-imports

test:
	$(PY) -m pytest -n 2 --dist loadfile

fmt:
	$(BIN)ruff format .
	$(BIN)ruff check --fix .

demo:
	$(BIN)stratcastd demo
