# make demo: set up and run the main job end to end; make test: set up and run the whole suite.
# One virtualenv, one stamp per set of extras: demo installs only `.[demo]`, test the full `.[test]`
# (so `make test` after `make demo` installs the test extras; `make demo` after `make test` has all it needs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGING := pyproject.toml setup.py

.PHONY: demo test lint typecheck install docs clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-demo: $(PACKAGING) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[demo]"
	touch $@

$(VENV)/.installed-test: $(PACKAGING) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

$(VENV)/.installed-bench: $(PACKAGING) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	touch $@

install: $(VENV)/.installed-test

$(VENV)/.installed-docs: $(PACKAGING) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $@

# A busy machine can take more than Prefect's default 20 s to start the ephemeral API.
demo: $(VENV)/.installed-demo
	PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120 \
		$(BIN)/rasteret demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

# Issue 11's benchmark against async-geotiff, a rasterio loop and rasteret 0.4.1 (bench/README.md): builds the
# archive once under build/bench/ (6 scenes x 4 bands; BENCH_ARGS=--full or RASTERET_BENCH_FULL=1 for 24), prints
# one table and writes build/bench/results.json. rasteret 0.4.1 runs on Python 3.12 in a venv it builds there.
bench: $(VENV)/.installed-bench
	PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 $(BIN)/python -m bench.suite $(BENCH_ARGS)

# ruff over the whole tree (rules and their exceptions in pyproject.toml); CI runs it before the tests.
lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

# mypy (strict on rasteret_core and rasteret_demo, lighter on tasks and flows; pyproject.toml). tasks/ and
# flows/ install as rasteret_tasks and rasteret_flows (setup.py), a mapping mypy cannot follow through the
# editable install: link them under those names where mypy_path points.
typecheck: $(VENV)/.installed-test
	mkdir -p build/mypy-path
	ln -sfn ../../tasks build/mypy-path/rasteret_tasks
	ln -sfn ../../flows build/mypy-path/rasteret_flows
	$(BIN)/mypy

# The documentation site: docs/*.md and mkdocs.yml, built offline (no web fonts, the offline plugin) into
# build/site; --strict fails on any warning (a broken link or anchor). Open build/site/index.html.
docs: $(VENV)/.installed-docs
	$(BIN)/mkdocs build --strict --site-dir build/site

clean:
	rm -rf $(VENV) demo-data .pytest_cache .mypy_cache .ruff_cache build/mypy-path
