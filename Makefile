# The two set-up commands: `make run` (the service) and `make test` (the suite).
# Each creates .venv and installs what it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench clean

# torch is installed first and pinned, so nothing pulls a multi-GB CUDA build.
$(BIN)/.runtime: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	touch $@

$(BIN)/.dev: $(BIN)/.runtime
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

run: $(BIN)/.runtime
	$(BIN)/radtriage serve

test: $(BIN)/.dev
	$(BIN)/python -m pytest

bench: $(BIN)/.dev
	$(BIN)/python scripts/bench_ingest.py

clean:
	rm -rf $(VENV) data
