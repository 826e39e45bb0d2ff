#!/usr/bin/env bash
# Installs (idempotently, quietly) the Debian packages the tests drive, when any is missing:
#   chromium + fonts-dejavu-core   headless browser of the UI and security tests (Playwright drives
#                                  /usr/bin/chromium; we never run `playwright install`)
#   redis-server                   Celery broker of the scale-out tests (they start their own on a free port)
#   docker-compose                 validates docker-compose.yaml (`config`); no Docker engine is needed
# apt's output goes to a log file and is shown only when the install fails.
#
# usage: scripts/install-test-packages.sh   (as root; otherwise prints the command to run)
set -euo pipefail

log() { echo "[packages] $*" >&2; }

missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium fonts-dejavu-core)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v docker-compose >/dev/null || missing+=(docker-compose)
((${#missing[@]})) || exit 0

if [[ "$(id -u)" != "0" ]]; then
  log "missing: ${missing[*]}; install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
  exit 0
fi

apt_log="$(mktemp -t cdr-apt.XXXXXX.log)"
log "installing ${missing[*]} from Debian's packages (log: $apt_log)"
export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 NEEDRESTART_MODE=l
# A fresh machine has no package lists yet; `install` alone would find nothing.
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1; then
  tail -n 40 "$apt_log" >&2
  exit 1
fi
# A package's post-install may start its system service where an init system exists: the tests
# never use it.
if command -v service >/dev/null; then service redis-server stop >/dev/null 2>&1 || true; fi
rm -f "$apt_log"
