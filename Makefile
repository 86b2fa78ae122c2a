# gosipd — the one-command entry points. `make test` and `make run` install first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYX := $(wildcard gosipd/_*.pyx) $(wildcard gosipd/*.h)

.PHONY: install build run test bench lint clean

install: $(STAMP) build

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 'setuptools>=77' wheel 'Cython>=3.0'
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

# Rebuild the Cython extensions in place whenever a .pyx or header changed.
build: $(STAMP) $(PYX)
	PYTHONWARNINGS=ignore $(PY) setup.py --quiet build_ext --inplace
	@$(PY) -c 'import gosipd._dsp'

run: install
	$(PY) -P -m gosipd.demo

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) bench/run.py

lint: install
	$(VENV)/bin/ruff check gosipd supervisor tests bench
	$(VENV)/bin/ruff format --check gosipd supervisor tests bench
	$(VENV)/bin/mypy
	PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/cython-lint gosipd

clean:
	rm -rf build $(VENV) gosipd/*.so gosipd/_*.c out .pytest_cache .mypy_cache
