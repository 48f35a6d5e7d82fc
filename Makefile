# citylake — the two commands that matter: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
UV_VERSION := 0.13.9
NYC_FEED := .cache/nyc_subway_gtfs.zip
PYTEST_ARGS ?=
PY_DIRS := citylake ingestion quality devtools tests dags
SQL_DIRS := dbt_project/models dbt_project/tests

.PHONY: install browser demo test lint bench bench-growth bench-history bench-backfill bench-accuracy bench-memory scaleout-check lock clean help

help:
	@echo "make demo     fresh clone -> venv -> sample extracts -> nightly refresh -> marts and report"
	@echo "make test     the test suite (what CI runs through .ci/run)"
	@echo "make bench    benchmarks, written to BENCHMARKS.md"
	@echo "make bench-growth   the metro night at 0.5x, 1x, 2x and 4x the volume (BENCHMARKS.md)"
	@echo "make bench-history  nights on 30, 180 and 365 days of history (BENCHMARKS.md)"
	@echo "make bench-backfill 7- and 28-day backfills at metro scale and the night after (BENCHMARKS.md)"
	@echo "make bench-accuracy the transit figures on every network at hand and a metro day (BENCHMARKS.md)"
	@echo "make scaleout-check  the nightly refresh and a backfill on Airflow's CeleryExecutor (PostgreSQL, Redis, 2 workers) vs one process"
	@echo "make lint     ruff, the import-direction contracts, sqlfluff"
	@echo "make lock     re-resolve constraints.txt from pyproject.toml"

# The venv is built from the committed lock (constraints.txt), as Airflow recommends.
install: $(STAMP) $(NYC_FEED)
$(STAMP): pyproject.toml constraints.txt citylake/consumers/explore/vendor.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install $(if $(VERBOSE),,--quiet) --python $(BIN)/python -c constraints.txt -e '.[dev]'
	@echo "$(VENV): $$($(BIN)/uv pip list --python $(BIN)/python 2>/dev/null | tail -n +3 | wc -l) packages, installed from constraints.txt (VERBOSE=1 lists them)"
	$(BIN)/citylake install-extensions
	$(BIN)/citylake install-vendor
	touch $(STAMP)

lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 -o constraints.txt

# The night prints the contract reports to PDF with Chromium when there is one (make browser).
demo: install
	@$(MAKE) --no-print-directory browser || echo "make demo: no Chromium (apt-get install chromium): contract reports in HTML only"
	$(BIN)/python -m devtools.demo

# The contract report is checked in Debian's headless Chromium: installed when missing (as root,
# or through passwordless sudo); the browser test fails, never skips, without it.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO="sudo -n"; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# pytest exits 5 when it collected nothing: say so loudly and fail, never pass silently.
# Lint first (ruff and its formatter; the import direction between rooms, pyproject's
# [tool.importlinter]; sqlfluff over the dbt SQL, .sqlfluff), then pytest on one worker per core
# (pytest-xdist; a test file stays on one worker; the costly read-only session fixtures, the
# simulated days and the lake after the nights, are built once per run and shared: built_once;
# the longest files go first, tests/conftest.py LONGEST_FIRST, so the workers end together).
# PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= auto
test: install browser
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/ruff format --check $(PY_DIRS)
	$(BIN)/lint-imports
	$(BIN)/sqlfluff lint --processes 2 $(SQL_DIRS)
	@set +e; $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: install
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/ruff format --check $(PY_DIRS)
	$(BIN)/lint-imports
	$(BIN)/sqlfluff lint --processes 2 $(SQL_DIRS)

bench: install
	$(BIN)/python -m devtools.bench

# The metro night at 0.5x to 4x the volume, each through Airflow from a fresh lake (issue #32).
bench-growth: install
	$(BIN)/python -m devtools.bench growth

# A year of small-scale history: backfills, then nights on 30, 180 and 365 days (BENCHMARKS.md).
bench-history: install
	$(BIN)/python -m devtools.bench_history

# Loading history at metro scale in batches: 7 and 28 days, and a night (issue #32, BENCHMARKS.md).
bench-backfill: install
	$(BIN)/python -m devtools.bench_backfill

# The accuracy figures of issue #19 on every network at hand, and one metro day (BENCHMARKS.md).
bench-accuracy: install
	$(BIN)/python -m devtools.bench_accuracy --metro

# Peak memory of one delivery per byte, feed by feed, on a metro day (BENCHMARKS.md, issue #29).
bench-memory: install
	$(BIN)/python -m devtools.bench_memory

scaleout-check: install
	$(BIN)/python -m devtools.scaleout

clean:
	rm -rf lake drop build .pytest_cache

# A second real GTFS feed for the tests (NYC subway excerpt shipped in the gtfs-kit sdist on
# PyPI): fetched with pip, never committed.
$(NYC_FEED): | $(STAMP)
	mkdir -p .cache/sdist
	$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: gtfs-kit==13.0.1 -d .cache/sdist
	tar -xzf .cache/sdist/gtfs_kit-13.0.1.tar.gz -C .cache gtfs_kit-13.0.1/data/nyc_subway_gtfs.zip
	mv .cache/gtfs_kit-13.0.1/data/nyc_subway_gtfs.zip $@
	rm -rf .cache/gtfs_kit-13.0.1 .cache/sdist
