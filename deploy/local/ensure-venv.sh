#!/usr/bin/env bash
# Creates .venv (Python 3.11, as pyproject.toml requires) and installs the project
# with its dev extras. The Makefile calls this only when pyproject.toml is newer
# than the venv's stamp, so the everyday path never reaches the network.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

VENV="$ROOT/.venv"
is_py311() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; }

python="${PYTHON:-}"
if [ -z "$python" ]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && is_py311 "$candidate"; then
            python="$candidate"; break
        fi
    done
fi
[ -n "$python" ] || die "no Python 3.11 found (Debian 12's python3 is 3.11; or set PYTHON=...)"

# A venv whose interpreter vanished or is the wrong version cannot be repaired in place.
if [ -e "$VENV" ] && ! is_py311 "$VENV/bin/python"; then
    log "recreating $VENV (its interpreter is missing or not Python 3.11)"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $python"
    "$python" -m venv "$VENV"
fi

log "installing fieldsync with dev extras into $VENV"
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -e '.[dev]'
