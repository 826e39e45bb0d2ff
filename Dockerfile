# Airflow image of the CDR report pipeline (docker-compose.yaml builds it).
# Everything is installed at BUILD time, pinned by requirements.lock used as constraints;
# nothing is installed when a container starts (no _PIP_ADDITIONAL_REQUIREMENTS).
FROM apache/airflow:3.3.2-python3.11

# Dependencies first: this layer is rebuilt only when the pins change.
COPY --chown=airflow:0 requirements.txt requirements.lock /opt/cdr-reports/
RUN pip install --no-cache-dir -r /opt/cdr-reports/requirements.txt -c /opt/cdr-reports/requirements.lock

# The cdr_reports package (include/): the DAG files in dags/ import it. Not editable: rebuild
# the image (`docker compose build`) after changing include/.
COPY --chown=airflow:0 pyproject.toml /opt/cdr-reports/
COPY --chown=airflow:0 include/ /opt/cdr-reports/include/
RUN pip install --no-cache-dir --no-deps /opt/cdr-reports \
    && python -c "import cdr_reports_dev.demo, cdr_reports.pipeline.extract, cdr_reports.pipeline.load"
