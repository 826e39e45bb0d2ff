#!/usr/bin/env bash
# Starts (idempotently) the real servers the tests use, on loopback only:
#   - FerretDB v1.24.2 (MongoDB wire protocol, SQLite backend), built once from the Go module
#     proxy into a cache folder outside the repo;
#   - PostgreSQL from Debian's packages (installed with apt-get when absent and we are root);
#   - mongo-java-server 1.47.0 (in-memory MongoDB-wire server from Maven Central), through the
#     launcher in tools/mongo-java-server, built once with Maven into the same cache folder. It runs
#     the MongoDB-style aggregation pipeline that FerretDB cannot, and reports MongoDB 6.0.
#   - moto's S3 server mode (moto[s3], pinned in requirements-test.txt, from the project's .venv:
#     run `make install` first), in memory: the S3-compatible archive destination of the tests.
# Writes .services/env (CDR_TEST_MONGO_URI=..., CDR_TEST_PG_URI=..., CDR_TEST_MJS_URI=...,
# CDR_TEST_S3_ENDPOINT=...) for
# `source`, with a key for every one of these servers that is listening.
#
# usage: scripts/services.sh start|stop [ferretdb] [postgres] [mongo-java-server] [s3]  (none: all)
#        scripts/services.sh status|build-ferretdb|build-mongo-java-server
# Ports: CDR_FERRETDB_PORT (27027), CDR_PG_PORT (54329), CDR_MJS_PORT (27028), CDR_S3_PORT (54330); JVM options of
# mongo-java-server: CDR_MJS_JAVA_OPTS.
set -euo pipefail
# Everything this script creates (data, logs, pid files, the env file with the test password) is
# private to its owner whatever the parent folder's mode: files 0600, folders 0700.
umask 077

FERRETDB_VERSION="v1.24.2"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${CDR_SERVICES_DIR:-$REPO/.services}"
CACHE="${CDR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdr-reports}"
FERRETDB_BIN="$CACHE/ferretdb-$FERRETDB_VERSION/ferretdb"
MJS_VERSION="1.47.0"
MJS_DIR="$CACHE/mongo-java-server-$MJS_VERSION"
MJS_JAR="$MJS_DIR/mongo-java-server-launcher.jar"
MONGO_PORT="${CDR_FERRETDB_PORT:-27027}"
PG_PORT="${CDR_PG_PORT:-54329}"
MJS_PORT="${CDR_MJS_PORT:-27028}"
S3_PORT="${CDR_S3_PORT:-54330}"
S3_PYTHON="${CDR_S3_PYTHON:-$REPO/.venv/bin/python}"
ALL_COMPONENTS=(ferretdb postgres mongo-java-server s3)
PG_DB="cdr_test"
PG_USER="cdr"
PG_PASSWORD="cdr-test-only"

log() { echo "[services] $*" >&2; }

is_root() { [[ $(id -u) -eq 0 ]]; }

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

# Stops the process in a pid file, only if it still is the program we started (a stale pid file
# must not kill whatever reuses the number), and waits for it to exit so the port is free after.
stop_pidfile() {  # pid file, substring of the command line, name
  local pid i
  [[ -f "$1" ]] || return 0
  pid="$(cat "$1")"
  if [[ -n "$pid" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"; then
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$3 (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
    fi
    log "stopped $3"
  fi
  rm -f "$1"
}

# The launcher jar is rebuilt only when tools/mongo-java-server changes (hash of its files).
mjs_source_hash() {
  (cd "$REPO/tools/mongo-java-server" && find . -type f \( -name pom.xml -o -name '*.java' \) -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

install_java() {
  command -v java >/dev/null && command -v mvn >/dev/null && return 0
  if ! is_root; then
    log "Java 17 and Maven are needed for mongo-java-server; run: sudo apt-get install -y openjdk-17-jdk-headless maven"
    exit 1
  fi
  log "installing Java 17 and Maven from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
}

build_mjs() {
  local hash build
  hash="$(mjs_source_hash)"
  if [[ -s "$MJS_JAR" && "$(cat "$MJS_DIR/source.sha256" 2>/dev/null)" == "$hash" ]]; then return 0; fi
  install_java
  log "building mongo-java-server $MJS_VERSION launcher into $MJS_JAR (once; Maven downloads its artifacts)"
  mkdir -p "$MJS_DIR"
  # Built from a copy so that Maven's target/ never lands in the repository.
  build="$(mktemp -d "$MJS_DIR/build.XXXXXX")"
  cp -r "$REPO/tools/mongo-java-server/." "$build/"
  if ! (cd "$build" && mvn -q -B -Dstyle.color=never package) >"$MJS_DIR/build.log" 2>&1; then
    tail -n 40 "$MJS_DIR/build.log" >&2
    log "Maven build failed (full log: $MJS_DIR/build.log)"
    rm -rf "$build"
    exit 1
  fi
  mv "$build/target/mongo-java-server-launcher.jar" "$MJS_JAR.tmp"
  mv "$MJS_JAR.tmp" "$MJS_JAR"
  echo "$hash" >"$MJS_DIR/source.sha256"
  rm -rf "$build"
}

start_mjs() {
  build_mjs
  if port_open "$MJS_PORT"; then
    log "mongo-java-server already listening on 127.0.0.1:$MJS_PORT"
    return 0
  fi
  log "starting mongo-java-server $MJS_VERSION on 127.0.0.1:$MJS_PORT (in memory: data is lost on stop)"
  # shellcheck disable=SC2086  # CDR_MJS_JAVA_OPTS is a list of JVM options
  nohup java ${CDR_MJS_JAVA_OPTS:-} -jar "$MJS_JAR" --listen-addr "127.0.0.1:$MJS_PORT" \
    >"$STATE/mongo-java-server.log" 2>&1 &
  echo $! >"$STATE/mongo-java-server.pid"
  wait_port "$MJS_PORT" mongo-java-server 60
}

# moto's server mode: an S3 API on loopback, in memory (buckets and objects are lost on stop).
start_s3() {
  if port_open "$S3_PORT"; then
    log "S3 server (moto) already listening on 127.0.0.1:$S3_PORT"
    return 0
  fi
  if ! "$S3_PYTHON" -c 'import moto.server' 2>/dev/null; then
    log "moto is not installed in $S3_PYTHON: run \`make install\` first (it is pinned in requirements-test.txt)"
    exit 1
  fi
  mkdir -p "$STATE"
  log "starting the S3 server (moto, in memory) on 127.0.0.1:$S3_PORT"
  nohup "$S3_PYTHON" -m moto.server -H 127.0.0.1 -p "$S3_PORT" >"$STATE/s3.log" 2>&1 &
  echo $! >"$STATE/s3.pid"
  wait_port "$S3_PORT" "S3 server (moto)" 60
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

# PostgreSQL refuses to run as root: as root, run its tools as the postgres user, from / (its
# tools fail with "could not identify current directory" in a folder postgres cannot enter).
as_pg() {
  if is_root; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# Where the cluster lives. As a normal user: $STATE/pgdata. As root the server runs as the postgres
# user, who may not be able to traverse the checkout (a clone in root's home or in a `mktemp -d`
# folder, mode 700), so the cluster goes to a folder of its own under /var/tmp, named by a hash of
# $STATE so that every checkout keeps its own; its socket lives in the data folder.
pg_home() {
  if is_root; then
    echo "/var/tmp/cdr-reports-pg-$(printf '%s' "$STATE" | sha256sum | cut -c1-16)"
  else
    echo "$STATE"
  fi
}
PGDATA_DIR="$(pg_home)/pgdata"

prepare_pg_home() {
  local home owner
  home="$(pg_home)"
  is_root || { mkdir -p "$home"; return 0; }
  # /var/tmp is writable by everyone: refuse a folder (or symlink) planted by someone else.
  if [[ -L "$home" ]]; then log "$home is a symlink; refusing to use it"; exit 1; fi
  if [[ -e "$home" ]]; then
    owner="$(stat -c %U "$home")"
    if [[ "$owner" != postgres ]]; then log "$home is owned by $owner, not postgres; refusing to use it"; exit 1; fi
  else
    install -d -m 700 -o postgres -g postgres "$home"
  fi
}

# A cluster initialised by an older version of this script trusted every TCP login: switch its
# pg_hba.conf to SCRAM for TCP (socket: the data folder's owner only) before it starts.
require_scram() {
  local hba="$1/pg_hba.conf"
  if as_pg grep -qE '^host[[:space:]].*trust' "$hba"; then
    log "PostgreSQL: requiring SCRAM passwords for TCP logins ($hba)"
    as_pg sed -i -E 's/^(host[[:space:]].*)trust[[:space:]]*$/\1scram-sha-256/' "$hba"
  fi
}

start_postgres() {
  install_postgres
  local bin pgdata
  bin="$(pg_bindir)"
  pgdata="$PGDATA_DIR"
  mkdir -p "$STATE"
  if port_open "$PG_PORT"; then
    log "PostgreSQL already listening on 127.0.0.1:$PG_PORT"
    return 0
  fi
  prepare_pg_home
  if ! as_pg test -s "$pgdata/PG_VERSION"; then
    as_pg mkdir -p -m 700 "$pgdata"
    # TCP logins need a password (SCRAM); the superuser connects only through the socket in the
    # mode-0700 data folder, i.e. as the folder's owner.
    as_pg "$bin/initdb" -D "$pgdata" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >/dev/null
  fi
  require_scram "$pgdata"
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  as_pg "$bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $pgdata -c fsync=off" start >/dev/null
  wait_port "$PG_PORT" PostgreSQL 30
  as_pg "$bin/psql" -h "$pgdata" -p "$PG_PORT" -U postgres -qtA -v ON_ERROR_STOP=1 -d postgres <<SQL >/dev/null
SET password_encryption = 'scram-sha-256';
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN SUPERUSER PASSWORD '$PG_PASSWORD';
  ELSE
    ALTER ROLE $PG_USER PASSWORD '$PG_PASSWORD';  -- stored as a SCRAM verifier, also when md5 before
  END IF;
END \$\$;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')\gexec
SQL
}

# One key per server that is listening now, whichever were started by this call: starting one
# component keeps the keys of the others that are still running.
write_env() {
  {
    port_open "$MONGO_PORT" && echo "CDR_TEST_MONGO_URI=mongodb://127.0.0.1:$MONGO_PORT/"
    port_open "$PG_PORT" && echo "CDR_TEST_PG_URI=postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
    port_open "$MJS_PORT" && echo "CDR_TEST_MJS_URI=mongodb://127.0.0.1:$MJS_PORT/"
    port_open "$S3_PORT" && echo "CDR_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
    true
  } >"$STATE/env.tmp"
  mv "$STATE/env.tmp" "$STATE/env"
  log "wrote $STATE/env"
}

stop_postgres() {
  local bin pgdata
  bin="$(pg_bindir)" || return 0
  # $STATE/pgdata too: a cluster that an older version of this script started there as root.
  for pgdata in "$PGDATA_DIR" "$STATE/pgdata"; do
    if as_pg test -s "$pgdata/postmaster.pid" 2>/dev/null; then
      as_pg "$bin/pg_ctl" -D "$pgdata" -m fast stop >/dev/null || true
      log "stopped PostgreSQL ($pgdata)"
    fi
  done
}

stop_component() {
  case "$1" in
    ferretdb) stop_pidfile "$STATE/ferretdb.pid" "$FERRETDB_BIN" FerretDB ;;
    postgres) stop_postgres ;;
    mongo-java-server) stop_pidfile "$STATE/mongo-java-server.pid" "$MJS_JAR" mongo-java-server ;;
    s3) stop_pidfile "$STATE/s3.pid" "moto.server" "S3 server (moto)" ;;
  esac
}

start_component() {
  case "$1" in
    ferretdb) start_ferretdb ;;
    postgres) start_postgres ;;
    mongo-java-server) start_mjs ;;
    s3) start_s3 ;;
  esac
}

# The components named after the command (all when none), checked before anything starts.
COMPONENTS=()
select_components() {
  local c
  if [[ $# -eq 0 ]]; then COMPONENTS=("${ALL_COMPONENTS[@]}"); return 0; fi
  for c in "$@"; do
    case "$c" in
      ferretdb | postgres | mongo-java-server | s3) COMPONENTS+=("$c") ;;
      *) echo "unknown component '$c' (known: ${ALL_COMPONENTS[*]})" >&2; exit 2 ;;
    esac
  done
}

usage() {
  echo "usage: $0 start|stop [ferretdb] [postgres] [mongo-java-server] [s3]   (no component: all)" >&2
  echo "       $0 status|build-ferretdb|build-mongo-java-server" >&2
  exit 2
}

command="${1:-start}"
[[ $# -gt 0 ]] && shift
case "$command" in
  start)
    select_components "$@"
    mkdir -p "$STATE"
    # Private whatever the parent's mode; also what an older version left world-readable.
    chmod 700 "$STATE"
    find "$STATE" -user "$(id -u)" ! -type l \( -type d -exec chmod 700 {} + -o -type f -exec chmod 600 {} + \)
    for c in "${COMPONENTS[@]}"; do start_component "$c"; done
    write_env ;;
  stop)
    select_components "$@"
    for c in "${COMPONENTS[@]}"; do stop_component "$c"; done
    [[ -f "$STATE/env" ]] && write_env
    log "stopped: ${COMPONENTS[*]}" ;;
  build-ferretdb) build_ferretdb; echo "$FERRETDB_BIN" ;;
  build-mongo-java-server) build_mjs; echo "$MJS_JAR" ;;
  status)
    port_open "$MONGO_PORT" && echo "FerretDB up on $MONGO_PORT" || echo "FerretDB down"
    if port_open "$PG_PORT"; then
      pgdata="(not started by this checkout)"
      for d in "$PGDATA_DIR" "$STATE/pgdata"; do
        # Line 4 of postmaster.pid is the port: the cluster must be the one on $PG_PORT.
        if [[ "$(as_pg sed -n 4p "$d/postmaster.pid" 2>/dev/null)" == "$PG_PORT" ]]; then pgdata="$d"; break; fi
      done
      echo "PostgreSQL up on $PG_PORT (data: $pgdata)"
    else
      echo "PostgreSQL down"
    fi
    port_open "$MJS_PORT" && echo "mongo-java-server up on $MJS_PORT" || echo "mongo-java-server down"
    port_open "$S3_PORT" && echo "S3 server (moto) up on $S3_PORT" || echo "S3 server (moto) down" ;;
  *) usage ;;
esac
