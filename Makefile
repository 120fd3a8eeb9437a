# Every target installs what it needs into .venv first, so a fresh machine needs only `make run` / `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The Dagster instance directory: DAGSTER_HOME if you set one, else .dagster_home/, made absolute as Dagster
# requires. Dagster keeps all instance storage under it; it gets the top-level dagster.yaml linked in when it
# has no config of its own.
export DAGSTER_HOME := $(abspath $(or $(DAGSTER_HOME),$(CURDIR)/.dagster_home))
INSTANCE := $(DAGSTER_HOME)/dagster.yaml

.PHONY: install run test lint bench up up-prod clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# -sfn replaces a link that dangles (a moved checkout); an existing file is the user's own config and stays.
$(INSTANCE):
	mkdir -p "$(DAGSTER_HOME)"
	ln -sfn "$(CURDIR)/dagster.yaml" "$@"

run: $(STAMP)
	$(BIN)/technic run $(ARGS)

# The web page's browser tests drive Debian's Chromium; install it when missing and we may (CI runs as root).
# Without it (and outside CI) those tests skip with a reason.
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "note: $(CHROMIUM) is missing; the browser tests will skip"; fi

# The production-shape test and `make up-prod` run a throwaway PostgreSQL server: install Debian's when no
# initdb is found and we may (CI runs as root). Without it (and outside CI) that test skips with a reason.
POSTGRES := /usr/lib/postgresql

$(POSTGRES):
	if command -v initdb >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else echo "note: PostgreSQL's server (initdb) is missing; the production-shape test will skip"; fi

test: $(STAMP) $(INSTANCE) lint | $(CHROMIUM) $(POSTGRES)
	$(BIN)/dagster definitions validate -w workspace.yaml
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Lint, format and types at zero findings (configured in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

up: $(STAMP)
	bash scripts/up.sh

# The production shape on one machine: Postgres as Dagster's storage, an S3-compatible bucket (moto) as the
# warehouse, the Dagster UI and daemon, the API (deploy/README.md). Ctrl-C stops it and removes its data.
up-prod: $(STAMP) | $(POSTGRES)
	$(BIN)/python scripts/prod_stack.py up $(ARGS)

bench: $(STAMP)
	$(BIN)/python bench/scan_speed.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/streaming.py
	$(BIN)/python bench/prioritization.py
	$(BIN)/python bench/ml_quality.py
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) .dagster_home .pytest_cache
