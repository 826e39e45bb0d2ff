#!/usr/bin/env bash
# Starts (idempotently) the real servers the tests use, on loopback only:
#   - FerretDB v1.24.2 (MongoDB wire protocol, SQLite backend), built once from the Go module
#     proxy into a cache folder outside the repo;
#   - PostgreSQL from Debian's packages (installed with apt-get when absent and we are root).
# Writes .services/env (CDR_TEST_MONGO_URI=..., CDR_TEST_PG_URI=...) for `source`.
#
# usage: scripts/services.sh start|stop|status|build-ferretdb
set -euo pipefail

FERRETDB_VERSION="v1.24.2"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${CDR_SERVICES_DIR:-$REPO/.services}"
CACHE="${CDR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdr-reports}"
FERRETDB_BIN="$CACHE/ferretdb-$FERRETDB_VERSION/ferretdb"
MONGO_PORT="${CDR_FERRETDB_PORT:-27027}"
PG_PORT="${CDR_PG_PORT:-54329}"
PG_DB="cdr_test"
PG_USER="cdr"
PG_PASSWORD="cdr-test-only"

log() { echo "[services] $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # port, name, seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    port_open "$1" && return 0
    sleep 0.1
  done
  log "$2 did not open port $1 within $3 s"
  return 1
}

build_ferretdb() {
  if [[ -x "$FERRETDB_BIN" ]]; then return 0; fi
  command -v go >/dev/null || { log "Go is needed to build FerretDB (none on PATH)"; exit 1; }
  log "building FerretDB $FERRETDB_VERSION into $FERRETDB_BIN (once; takes a few minutes)"
  mkdir -p "$(dirname "$FERRETDB_BIN")"
  # The module's go.mod/go.sum pin FerretDB and every dependency by hash.
  (cd "$REPO/tools/ferretdb" && GOFLAGS=-mod=mod go build -trimpath -o "$FERRETDB_BIN.tmp" .)
  mv "$FERRETDB_BIN.tmp" "$FERRETDB_BIN"
}

start_ferretdb() {
  build_ferretdb
  if port_open "$MONGO_PORT"; then
    log "FerretDB already listening on 127.0.0.1:$MONGO_PORT"
    return 0
  fi
  mkdir -p "$STATE/ferretdb-data"
  log "starting FerretDB $FERRETDB_VERSION on 127.0.0.1:$MONGO_PORT"
  nohup "$FERRETDB_BIN" -listen-addr "127.0.0.1:$MONGO_PORT" -sqlite-dir "$STATE/ferretdb-data" \
    >"$STATE/ferretdb.log" 2>&1 &
  echo $! >"$STATE/ferretdb.pid"
  wait_port "$MONGO_PORT" FerretDB 30
}

pg_bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/pg_ctl" ]] && { echo "$d"; return 0; }
  done
  return 1
}

install_postgres() {
  pg_bindir >/dev/null && return 0
  if [[ $(id -u) -ne 0 ]]; then
    log "PostgreSQL is not installed; run: sudo apt-get install -y postgresql"
    exit 1
  fi
  log "installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq postgresql >/dev/null
}

# PostgreSQL refuses to run as root: as root, run its tools as the postgres user.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  install_postgres
  local bin pgdata
  bin="$(pg_bindir)"
  pgdata="$STATE/pgdata"
  mkdir -p "$STATE"
  if port_open "$PG_PORT"; then
    log "PostgreSQL already listening on 127.0.0.1:$PG_PORT"
    return 0
  fi
  if [[ ! -s "$pgdata/PG_VERSION" ]]; then
    mkdir -p "$pgdata"
    [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$pgdata" && chmod 755 "$STATE"
    as_pg "$bin/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  as_pg "$bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $pgdata -c fsync=off" start >/dev/null
  wait_port "$PG_PORT" PostgreSQL 30
  as_pg "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qtA -v ON_ERROR_STOP=1 -d postgres <<SQL >/dev/null
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN SUPERUSER PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')\gexec
SQL
}

write_env() {
  cat >"$STATE/env" <<EOF
CDR_TEST_MONGO_URI=mongodb://127.0.0.1:$MONGO_PORT/
CDR_TEST_PG_URI=postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB
EOF
  log "wrote $STATE/env"
}

stop_all() {
  if [[ -f "$STATE/ferretdb.pid" ]]; then
    kill "$(cat "$STATE/ferretdb.pid")" 2>/dev/null || true
    rm -f "$STATE/ferretdb.pid"
  fi
  local bin
  if bin="$(pg_bindir)" && [[ -s "$STATE/pgdata/postmaster.pid" ]]; then
    as_pg "$bin/pg_ctl" -D "$STATE/pgdata" -m fast stop >/dev/null || true
  fi
  log "stopped"
}

case "${1:-start}" in
  start) mkdir -p "$STATE"; start_ferretdb; start_postgres; write_env ;;
  stop) stop_all ;;
  build-ferretdb) build_ferretdb; echo "$FERRETDB_BIN" ;;
  status)
    port_open "$MONGO_PORT" && echo "FerretDB up on $MONGO_PORT" || echo "FerretDB down"
    port_open "$PG_PORT" && echo "PostgreSQL up on $PG_PORT" || echo "PostgreSQL down" ;;
  *) echo "usage: $0 start|stop|status|build-ferretdb" >&2; exit 2 ;;
esac
