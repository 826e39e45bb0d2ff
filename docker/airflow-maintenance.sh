#!/usr/bin/env bash
# Metadata and log purge (compose service `airflow-db-clean`). Airflow 3 tasks cannot reach the
# metadata database, so this is a separate process instead of a maintenance DAG.
#
# Every AIRFLOW_MAINTENANCE_INTERVAL_SECONDS (default: daily):
#   - `airflow db clean` of rows older than AIRFLOW_DB_RETENTION_DAYS (dag runs, task
#     instances, XComs, logs table, jobs...), without archive tables;
#   - deletes task/processor log files older than AIRFLOW_LOG_RETENTION_DAYS, then empty folders.
# usage: airflow-maintenance.sh [--once]
set -euo pipefail

db_days="${AIRFLOW_DB_RETENTION_DAYS:-30}"
log_days="${AIRFLOW_LOG_RETENTION_DAYS:-${db_days}}"
interval="${AIRFLOW_MAINTENANCE_INTERVAL_SECONDS:-86400}"
logs="${AIRFLOW__LOGGING__BASE_LOG_FOLDER:-${AIRFLOW_HOME:-/opt/airflow}/logs}"

for pair in "AIRFLOW_DB_RETENTION_DAYS=${db_days}" "AIRFLOW_LOG_RETENTION_DAYS=${log_days}" \
            "AIRFLOW_MAINTENANCE_INTERVAL_SECONDS=${interval}"; do
  if ! [[ "${pair#*=}" =~ ^[1-9][0-9]*$ ]]; then
    echo "[maintenance] ${pair}: must be a whole number >= 1" >&2
    exit 2
  fi
done

run_once() {
  local cutoff
  cutoff="$(date -u -d "-${db_days} days" '+%Y-%m-%d %H:%M:%S+00:00')"
  echo "[maintenance] $(date -u '+%Y-%m-%dT%H:%M:%SZ') airflow db clean before ${cutoff}"
  airflow db clean --clean-before-timestamp "${cutoff}" --skip-archive --yes --error-on-cleanup-failure || return 1
  if [[ -d "${logs}" ]]; then
    local deleted
    deleted="$(find "${logs}" -type f -mmin "+$((log_days * 1440))" -print -delete | wc -l)"
    find "${logs}" -mindepth 1 -type d -empty -delete
    echo "[maintenance] deleted ${deleted} log file(s) older than ${log_days} day(s) under ${logs}"
  fi
}

if [[ "${1:-}" == "--once" ]]; then
  run_once
  exit 0
fi
while true; do
  # A failed cycle (e.g. DB briefly down) is retried at the next one instead of killing the loop.
  run_once || echo "[maintenance] cycle failed; retrying in ${interval} s" >&2
  sleep "${interval}"
done
