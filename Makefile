# cdr-reports: one entry point for install, local servers, tests, demo and benchmarks.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP_VERSION := 26.3

.PHONY: install services services-stop test test-unit lock demo airflow bench bench-quick clean

install: $(VENV)/.installed

# Reinstalls when a pin changes; the package itself is installed editable so that pytest,
# the airflow CLI and scripts all import include/cdr_reports without PYTHONPATH tricks.
$(VENV)/.installed: requirements.lock requirements.txt requirements-test.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check pip==$(PIP_VERSION)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-test.txt -c requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	$(PY) -m pip check
	touch $@

services:
	bash scripts/services.sh start

services-stop:
	bash scripts/services.sh stop

test: install services
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest tests/unit tests/dags

lock: install
	{ echo "# Full lock of the development/CI environment (runtime + test), from pip freeze."; \
	  echo "# Regenerate with: make lock.  Docker images use it as constraints for requirements.txt."; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^cdr-reports'; } > requirements.lock

clean:
	bash scripts/services.sh stop || true
	rm -rf .services airflow_home .pytest_cache .hypothesis
