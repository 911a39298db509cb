#!/usr/bin/env bash
# Stops what ensure-db.sh started for this checkout: the private PostgreSQL
# cluster and a redis-server it launched. Never touches the machine's own
# PostgreSQL or Redis. With --remove, also deletes the private cluster's files
# (used by `make clean`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

remove=false
[ "${1:-}" = --remove ] && remove=true

# The recorded location first, then both places a cluster may live.
candidates=("$(cat "$VAR/pg-private" 2>/dev/null || true)" "$VAR/pg" "$(private_pg_tmp_dir)")
seen=" "
for dir in "${candidates[@]}"; do
    [ -n "$dir" ] && [[ "$seen" != *" $dir "* ]] || continue
    seen+="$dir "
    [ -f "$dir/data/PG_VERSION" ] || continue
    if running_pg_port "$dir" >/dev/null; then
        log "stopping the private cluster in $dir"
        run_as_pg "$PG_BINDIR/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    fi
    if $remove; then
        log "removing $dir"
        rm -rf -- "$dir"
    fi
done
rm -f "$VAR/pg-private"

# Only a redis-server we started (its pid file is ours), and only if that pid
# still is a redis-server.
pidfile="$VAR/redis.pid"
if [ -f "$pidfile" ]; then
    pid="$(cat "$pidfile")"
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = redis-server ]; then
        log "stopping redis-server (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    fi
    rm -f "$pidfile"
fi
