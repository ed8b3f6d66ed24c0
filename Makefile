# The two set-up commands: `make run` (the service) and `make test` (the suite).
# Each creates .venv and installs what it needs on a fresh machine (`make test` also the
# real peers it tests against: see `peers`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench clean peers

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

# The real peers the suite talks to on loopback (dcmtk, Orthanc, Chromium, PostgreSQL):
# installed with apt-get as root, otherwise the exact command to run is printed.
# `make test NO_PEERS=1` runs without them: their tests are skipped and counted at the end.
peers:
	sh scripts/peers.sh

test: $(BIN)/.dev $(if $(NO_PEERS),,peers)
	$(BIN)/python -m pytest

bench: $(BIN)/.dev peers
	$(BIN)/python scripts/bench_ingest.py

clean:
	rm -rf $(VENV) data
