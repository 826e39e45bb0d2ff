#!/usr/bin/env bash
# Installs Debian's redis-server (idempotently): the Celery broker of the scale-out tests in
# tests/celery/. The tests start their own redis-server on a free loopback port; the Debian
# service itself is not used (no systemd on CI machines, nothing listens on 6379).
#
# usage: scripts/install-redis.sh      (as root; otherwise prints the command to run)
set -euo pipefail

REDIS="${CDR_REDIS_SERVER:-/usr/bin/redis-server}"

log() { echo "[redis] $*" >&2; }

if [[ -x "$REDIS" ]] || command -v redis-server >/dev/null; then
  exit 0
fi

if [[ "$(id -u)" != "0" ]]; then
  log "redis-server is missing; install it with: sudo apt-get update && sudo apt-get install -y redis-server"
  exit 0
fi

log "installing redis-server from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists yet; `install` alone would find nothing.
apt-get update -qq
apt-get install -y -qq --no-install-recommends redis-server >/dev/null
# The package's post-install may start the system service where an init system exists: stop it,
# the tests never use it.
if command -v service >/dev/null; then service redis-server stop >/dev/null 2>&1 || true; fi
redis-server --version >&2
