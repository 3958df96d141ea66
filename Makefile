# The two commands of the README: `make demo` and `make test`. Both set up .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/cmproxy: pyproject.toml
	scripts/install-kerberos-packages.sh
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,pandas,emulator,notebook]'
	$(BIN)/python -m pip install --quiet -e '.[credssp]'
	if command -v krb5-config >/dev/null 2>&1; then $(BIN)/python -m pip install --quiet -e '.[kerberos]' || echo "cmproxy[kerberos] did not build: the Kerberos tests will skip"; else echo "krb5-config not found (libkrb5-dev): cmproxy[kerberos] not installed; the Kerberos tests will skip"; fi
	touch $@

.PHONY: demo test lint bench
demo: $(BIN)/cmproxy
	$(BIN)/cmproxy demo

lint: $(BIN)/cmproxy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost $(BIN)/pytest -q

# Benchmarks (never part of the tests): prints the table that docs/performance.md records.
bench: $(BIN)/cmproxy
	NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost $(BIN)/python benchmarks/run.py
