#!/usr/bin/env bash
# One-shot (compose service `mssql-init`, after `reports-schema`): the report database's settings,
# the DAG's least-privilege login and its grants on the report tables (docker/mssql-init.sql).
set -euo pipefail
: "${MSSQL_SA_PASSWORD:?set MSSQL_SA_PASSWORD in .env}"
: "${MSSQL_REPORTS_PASSWORD:?set MSSQL_REPORTS_PASSWORD in .env}"
# sqlcmd reads scripting variables from the environment: no password on a command line.
export DB_NAME="${CDR_REPORTS_DATABASE:-cdr_reports}"
export REPORT_SCHEMA="${CDR_SQL_SCHEMA:-dbo}"
export APP_LOGIN="${MSSQL_REPORTS_LOGIN:-cdr_reports_app}"
export APP_PASSWORD="${MSSQL_REPORTS_PASSWORD}"
# The values are pasted into T-SQL (N'...' literals, [...] names): refuse what would break out of them.
for pair in "DB_NAME=${DB_NAME}" "REPORT_SCHEMA=${REPORT_SCHEMA}" "MSSQL_REPORTS_LOGIN=${APP_LOGIN}"; do
  if ! [[ "${pair#*=}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    echo "[mssql-init] ${pair%%=*}: only letters, digits and _ allowed" >&2
    exit 2
  fi
done
if [[ "${APP_PASSWORD}" == *"'"* || "${APP_PASSWORD}" == *'$('* ]]; then
  echo "[mssql-init] MSSQL_REPORTS_PASSWORD must not contain ' or \$( (generate it as hex, see .env.example)" >&2
  exit 2
fi
sqlcmd=/opt/mssql-tools18/bin/sqlcmd
[[ -x "${sqlcmd}" ]] || sqlcmd=/opt/mssql-tools/bin/sqlcmd   # images before mssql-tools18
# SQLCMDPASSWORD keeps the password off the command line; -C trusts the dev server's self-signed cert.
SQLCMDPASSWORD="${MSSQL_SA_PASSWORD}" "${sqlcmd}" -C -b -S "${MSSQL_HOST:-mssql},1433" -U sa \
  -i "$(dirname "$0")/mssql-init.sql"
echo "[mssql-init] database ${DB_NAME} ready; login ${APP_LOGIN} may read and replace reports only"
