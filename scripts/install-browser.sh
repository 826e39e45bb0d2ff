#!/usr/bin/env bash
# Installs Debian's Chromium (idempotently) for the browser tests in tests/security/.
# Playwright drives this system browser through executable_path=/usr/bin/chromium: we never
# run `playwright install`, which would download a browser build of its own.
#
# usage: scripts/install-browser.sh      (as root; otherwise prints the command to run)
set -euo pipefail

CHROMIUM="${CDR_CHROMIUM:-/usr/bin/chromium}"

log() { echo "[browser] $*" >&2; }

if [[ -x "$CHROMIUM" ]]; then
  exit 0
fi

if [[ "$(id -u)" != "0" ]]; then
  log "$CHROMIUM is missing; install it with: sudo apt-get update && sudo apt-get install -y chromium"
  exit 0
fi

log "installing chromium from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists yet; `install` alone would find nothing.
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
"$CHROMIUM" --version >&2
