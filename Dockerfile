# Airflow image of the CDR report pipeline (docker-compose.yaml builds it).
# Everything is installed at BUILD time, pinned by requirements.lock used as constraints;
# nothing is installed when a container starts (no _PIP_ADDITIONAL_REQUIREMENTS).
FROM apache/airflow:3.3.2-python3.11 AS airflow

# Dependencies first: this layer is rebuilt only when the pins change.
COPY --chown=airflow:0 requirements.txt requirements.lock /opt/cdr-reports/
RUN pip install --no-cache-dir -r /opt/cdr-reports/requirements.txt -c /opt/cdr-reports/requirements.lock

# The cdr_reports package (include/): the DAG files in dags/ import it. Not editable: rebuild
# the image (`docker compose build`) after changing include/.
COPY --chown=airflow:0 pyproject.toml /opt/cdr-reports/
COPY --chown=airflow:0 include/ /opt/cdr-reports/include/
# Production ships only cdr_reports (no demo, no synthetic data): the last check proves it.
RUN pip install --no-cache-dir --no-deps /opt/cdr-reports \
    && python -c "import cdr_reports.integration.dag_factory, cdr_reports.pipeline.extract, cdr_reports.pipeline.load" \
    && ! python -c "import cdr_reports_dev" 2>/dev/null

# Developer tooling for the compose stack's one-shot seed step (`mongo-seed`): the production
# image plus the cdr_reports_dev distribution (devtools/). Never used by an Airflow service.
FROM airflow AS tools
COPY --chown=airflow:0 devtools/ /opt/cdr-reports/devtools/
RUN pip install --no-cache-dir --no-deps /opt/cdr-reports/devtools \
    && python -c "import cdr_reports_dev.demo, cdr_reports_dev.synthetic"
