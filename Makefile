# make demo: set up and run the main job end to end; make test: set up and run the whole suite.
# One virtualenv, one stamp per set of extras: demo installs only `.[demo]`, test the full `.[test]`
# (so `make test` after `make demo` installs the test extras; `make demo` after `make test` has all it needs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGING := pyproject.toml setup.py

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-demo: $(PACKAGING) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[demo]"
	touch $@

$(VENV)/.installed-test: $(PACKAGING) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed-test

# A busy machine can take more than Prefect's default 20 s to start the ephemeral API.
demo: $(VENV)/.installed-demo
	PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120 \
		$(BIN)/rasteret demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-data .pytest_cache
