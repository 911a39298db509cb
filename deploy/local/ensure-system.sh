#!/usr/bin/env bash
# Installs the Debian packages fieldsync needs, but only those that are missing,
# so a second run neither touches the network nor needs root.
# Usage: ensure-system.sh [extra-package ...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

packages=(
    gdal-bin libgdal-dev                 # GeoDjango loads libgdal
    "postgresql-$PG_MAJOR-postgis-3"     # PostGIS + the server binaries (initdb, pg_ctl)
    "postgresql-client-$PG_MAJOR"        # psql, pg_isready
    chromium                             # the e2e tests drive Debian's chromium
    redis-server                         # Celery broker (brings redis-cli)
    nginx-light                          # the proxy of tests/deploy (production shape, nginx -t)
    "$@"
)
# python3 -m venv needs ensurepip, which Debian ships separately.
if ! command -v python3 >/dev/null 2>&1; then
    packages+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    packages+=(python3-venv)
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

log "installing missing packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive   # no prompts (tzdata etc.) in CI
as_root apt-get update
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
