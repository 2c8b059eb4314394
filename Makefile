# Set-up and entry points. Every target installs what it needs into .venv first,
# so `make test` and `make demo` work on a fresh machine with nothing installed by hand.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test test-slow demo clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Default test suite (fast; about 5-10 minutes on 2 CPU cores).
test: $(STAMP)
	$(PY) -m pytest -q tests

## Long tests (marked `slow`): real training runs and full-size networks.
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow tests

## The main job on its built-in default.
demo: $(STAMP)
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
