#!/usr/bin/env bash
# One-shot initialisation of Airflow (compose service `airflow-init`; also runs natively, see
# tests/unit/test_compose.py): metadata DB migration, the report roles, the FAB admin user.
# Fails loudly, unlike the image's _AIRFLOW_DB_MIGRATE/_AIRFLOW_WWW_USER_CREATE hooks,
# which ignore errors.
set -euo pipefail

user="${_AIRFLOW_WWW_USER_USERNAME:-admin}"
password="${_AIRFLOW_WWW_USER_PASSWORD:?set _AIRFLOW_WWW_USER_PASSWORD (the admin password) in .env}"
logs="${AIRFLOW__LOGGING__BASE_LOG_FOLDER:-${AIRFLOW_HOME:-/opt/airflow}/logs}"

echo "[airflow-init] migrating the metadata database"
airflow db migrate

# The DAGs' access_control names the report roles: they must exist before the first parse.
if python -c "import cdr_reports.integration.security" 2>/dev/null; then
  echo "[airflow-init] creating/converging the report roles"
  python -m cdr_reports.integration.security ensure-roles
fi

echo "[airflow-init] admin user ${user}"
# The password goes in on stdin (printf is a shell builtin), never as a command-line argument:
# `airflow users create --password` shows it to every process list. --reset: .env stays the
# source of truth for the admin password.
printf '%s\n' "${password}" | python -m cdr_reports.integration.security ensure-user \
  --username "${user}" --role Admin --email "${user}@example.invalid" --reset

mkdir -p "${logs}"
if [[ $(id -u) == 0 ]]; then
  # Root only for this: the logs volume must belong to the uid the other services run as.
  chown -R "${AIRFLOW_UID:-50000}:0" "${logs}"
fi
echo "[airflow-init] done"
