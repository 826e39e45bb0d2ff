#!/usr/bin/env bash
# One-shot (compose service `mssql-init`): creates the report database on the `mssql` service.
set -euo pipefail
: "${MSSQL_SA_PASSWORD:?set MSSQL_SA_PASSWORD in .env}"
database="${CDR_REPORTS_DATABASE:-cdr_reports}"
sqlcmd=/opt/mssql-tools18/bin/sqlcmd
[[ -x "${sqlcmd}" ]] || sqlcmd=/opt/mssql-tools/bin/sqlcmd   # images before mssql-tools18
# SQLCMDPASSWORD keeps the password off the command line; -C trusts the dev server's self-signed cert.
SQLCMDPASSWORD="${MSSQL_SA_PASSWORD}" "${sqlcmd}" -C -b -S "${MSSQL_HOST:-mssql},1433" -U sa \
  -v DB_NAME="${database}" -i "$(dirname "$0")/mssql-init.sql"
echo "[mssql-init] database ${database} ready"
