# cdr-reports: one entry point for install, local servers, tests, demo and benchmarks.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP_VERSION := 26.3

.PHONY: install services services-stop test test-unit lint format lock env demo demo-archive airflow airflow-cli bench bench-quick module-map clean

install: $(VENV)/.installed

# PYTHONWARNINGS below: setuptools' editable-install notice is noise for a first-hour user.
# Reinstalls when a pin changes; the package itself is installed editable so that pytest,
# the airflow CLI and scripts all import include/cdr_reports without PYTHONPATH tricks.
$(VENV)/.installed: requirements.lock requirements.txt requirements-test.txt requirements-s3.txt pyproject.toml devtools/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check pip==$(PIP_VERSION)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-test.txt -c requirements.lock
	PYTHONWARNINGS=ignore $(PY) -m pip install -q --disable-pip-version-check --no-deps -e . -e devtools
	@out="$$($(PY) -m pip check)" || { echo "$$out"; exit 1; }
	touch $@

services: install
	bash scripts/services.sh start
	bash scripts/install-test-packages.sh

services-stop:
	bash scripts/services.sh stop

test: install services
	$(PY) -m pytest

# Style, types and layers; fails fast before any server starts (.ci/run runs it first).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The tests that need no server (pytest's `services` marker deselected: tests/conftest.py marks every
# test whose fixtures start or reach one); passes with nothing running. .ci/run runs it with
# CDR_TEST_NO_SERVICES=1 first, so a service test left unmarked here fails CI.
test-unit: install
	$(PY) -m pytest -m "not services" tests/unit tests/dags

# The compose stack's .env with every secret generated (refuses to overwrite an existing .env).
env: install
	$(PY) -m cdr_reports_dev.envfile

# No Docker needed: synthetic CDRs in FerretDB (db cdr_demo), the three DAGs via `airflow dags
# test`, reports printed as tables. DEMO_DAYS / DEMO_CALLS_PER_DAY size the data (docs/local-stack.md).
demo: install
	bash scripts/services.sh start ferretdb postgres
	$(PY) -m cdr_reports_dev.demo run

# After `make demo`: the retention DAG archives the demo's reports with a 7-day retention
# (CDR_REPORT_RETENTION_DAYS) to .services/demo_archive (CDR_ARCHIVE_URL), then they are restored.
demo-archive: install
	bash scripts/services.sh start postgres
	$(PY) -m cdr_reports_dev.archive_demo

# The Airflow UI on the demo data (FAB login), in the foreground: Ctrl-C stops every component.
airflow: install
	bash scripts/services.sh start ferretdb postgres
	$(PY) -m cdr_reports_dev.demo airflow

# The airflow CLI against that Airflow (its metadata DB, auth manager and keys), e.g.
# make airflow-cli ARGS="users list"   or   make airflow-cli ARGS="dags list-runs cdr_daily_report"
airflow-cli: install
	bash scripts/services.sh start postgres
	$(PY) -m cdr_reports_dev.demo cli $(ARGS)

# The README's module map (Layout): every module, its job (docstring) and lines; checked by
# tests/unit/test_module_map.py.
module-map: install
	$(PY) -m cdr_reports_dev.module_map --write

lock: install
	{ echo "# Full lock of the development/CI environment (runtime + test), from pip freeze."; \
	  echo "# Regenerate with: make lock.  Docker images use it as constraints for requirements.txt."; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^cdr-reports'; } > requirements.lock

# Writes docs/benchmarks.{json,md} from one run: 5 interleaved pairs (ours, fetch-all) at 200k CDRs
# and 3 at 1M, on the bench's own FerretDB and mongo-java-server (-Xmx6g) processes; ~20 min on an
# idle 2-core machine, longer under load (docs/benchmarks.md records the time taken and the load average).
bench: install services
	timeout 14400 $(PY) bench/run.py --out docs

# Tiny sizes, one run: checks the suite end to end in ~2 minutes (numbers meaningless).
bench-quick: install services
	timeout 900 $(PY) bench/run.py --quick --out .services/bench-quick

clean:
	bash scripts/services.sh stop || true
	rm -rf .services airflow_home .pytest_cache .hypothesis
