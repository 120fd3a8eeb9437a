# Every target installs what it needs into .venv first, so a fresh machine needs only `make run` / `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The instance config (dagster.yaml) lives at the top level; its storage goes to .dagster_home/.
export DAGSTER_HOME ?= $(CURDIR)

.PHONY: install run test bench up clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/technic run $(ARGS)

test: $(STAMP)
	$(BIN)/dagster definitions validate -w workspace.yaml
	$(BIN)/python -m pytest $(PYTEST_ARGS)

up: $(STAMP)
	bash scripts/up.sh

bench: $(STAMP)
	$(BIN)/python bench/scan_speed.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/streaming.py
	$(BIN)/python bench/prioritization.py
	$(BIN)/python bench/ml_quality.py

clean:
	rm -rf $(VENV) .dagster_home .pytest_cache
