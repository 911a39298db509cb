# Shared helpers for the deploy/local/*.sh scripts (sourced, not run).
# Keeps the paths and the "who runs PostgreSQL" rules in one place so
# ensure-db.sh and stop-db.sh always agree on where the private cluster lives.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VAR="$ROOT/var"

# PostgreSQL major version whose server binaries and PostGIS package we use.
PG_MAJOR="${PG_MAJOR:-15}"
PG_BINDIR="${PG_BINDIR:-/usr/lib/postgresql/$PG_MAJOR/bin}"
DB_NAME="${FIELDSYNC_DB_NAME:-fieldsync}"

log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

# apt needs root; a developer laptop goes through sudo, CI runs as root.
as_root() {
    if is_root; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root for: $* (run as root or install sudo)"
    fi
}

# initdb refuses to run as root, so as root the private cluster belongs to the
# Debian 'postgres' user; as an ordinary user it simply belongs to that user.
pg_owner() { if is_root; then echo postgres; else id -un; fi; }
run_as_pg() {
    # cd / so the postgres user never trips over an unreadable working directory.
    if is_root; then (cd / && runuser -u postgres -- "$@")
    else (cd / && "$@")
    fi
}

# Something listening on 127.0.0.1:<port>? (bash's /dev/tcp: no extra tools needed)
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Where the private cluster lives. var/pg when its owner can reach it; otherwise
# a per-checkout directory in /tmp (e.g. checkout under /root, which is 0700).
# An existing cluster wins, so it keeps its place between runs.
private_pg_tmp_dir() { echo "/tmp/fieldsync-pg-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"; }
private_pg_dir() {
    local in_tree="$VAR/pg" in_tmp
    in_tmp="$(private_pg_tmp_dir)"
    if [ -f "$in_tree/data/PG_VERSION" ]; then echo "$in_tree"; return; fi
    if [ -f "$in_tmp/data/PG_VERSION" ]; then echo "$in_tmp"; return; fi
    # The unix socket path (<dir>/run/.s.PGSQL.NNNNN) must fit in 107 bytes.
    if [ "${#in_tree}" -le 80 ] && { ! is_root || runuser -u postgres -- test -x "$VAR"; }; then
        echo "$in_tree"
    else
        echo "$in_tmp"
    fi
}

# Port of a running cluster, read from its postmaster.pid (4th line), or nothing.
running_pg_port() {
    local data="$1/data"
    [ -f "$data/PG_VERSION" ] || return 1
    run_as_pg "$PG_BINDIR/pg_ctl" status -D "$data" >/dev/null 2>&1 || return 1
    sed -n 4p "$data/postmaster.pid"
}
