#!/usr/bin/env bash
# Picks the database (and Redis) for this checkout, makes sure they are up, and
# writes var/env: `export X=...` lines that the make targets source.
#
# Database, first match wins:
#   1. DATABASE_URL from the environment, as given;
#   2. a PostgreSQL answering on 127.0.0.1:5432 (the machine's own server), if it
#      lets user postgres in without a password (a fresh Debian install does not);
#   3. a private PostGIS cluster for this checkout, started on demand (var/pg,
#      or /tmp/fieldsync-pg-<hash> when the postgres user cannot reach var/).
# Idempotent: a running private cluster is reused, a stopped one restarted.
#
# Test hooks: FIELDSYNC_PG_PROBE_PORT (default 5432) is the port probed in step 2;
# point it at an unused port to exercise step 3 on a machine with PostgreSQL.
# FIELDSYNC_REDIS_PORT (default 6379) does the same for Redis.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PROBE_PORT="${FIELDSYNC_PG_PROBE_PORT:-5432}"
REDIS_PORT="${FIELDSYNC_REDIS_PORT:-6379}"   # test hook too; the default is what settings expect
FIRST_PRIVATE_PORT=54329

mkdir -p "$VAR"
chmod 755 "$VAR"   # the postgres user must be able to traverse it for var/pg

psql_admin() {   # psql as superuser against host:port, never prompting for a password
    local host="$1" port="$2"; shift 2
    PGCONNECT_TIMEOUT=5 PGOPTIONS="-c client_min_messages=warning" \
        psql -w -X -q -v ON_ERROR_STOP=1 -h "$host" -p "$port" -U postgres "$@"
}

# Creates the database if missing and enables PostGIS in it. Each step returns on
# failure (set -e does not apply inside a function called with ||).
prepare_database() {
    local host="$1" port="$2" exists has_postgis major
    exists="$(psql_admin "$host" "$port" -d postgres -Atc \
        "SELECT count(*) FROM pg_database WHERE datname = '$DB_NAME'")" || return 1
    if [ "$exists" = 0 ]; then
        log "creating database $DB_NAME on $host:$port"
        psql_admin "$host" "$port" -d postgres -c "CREATE DATABASE \"$DB_NAME\"" || return 1
    fi
    # The server may lack the PostGIS package for its own major version.
    has_postgis="$(psql_admin "$host" "$port" -d postgres -Atc \
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'postgis'")" || return 1
    if [ "$has_postgis" = 0 ]; then
        major="$(psql_admin "$host" "$port" -d postgres -Atc \
            "SELECT current_setting('server_version_num')::int / 10000")" || return 1
        log "PostGIS is not installed for PostgreSQL $major; installing it"
        "$ROOT/deploy/local/ensure-system.sh" "postgresql-$major-postgis-3" || return 1
    fi
    psql_admin "$host" "$port" -d "$DB_NAME" -c "CREATE EXTENSION IF NOT EXISTS postgis"
}

# Starts (or reuses) the private cluster; prints its port.
ensure_private_cluster() {
    local dir data sock logfile owner port
    dir="$(private_pg_dir)"
    data="$dir/data"; sock="$dir/run"; logfile="$dir/postgres.log"
    owner="$(pg_owner)"
    [ -x "$PG_BINDIR/initdb" ] || die "no $PG_BINDIR/initdb; run 'make test' or 'make run' (they install postgresql-$PG_MAJOR-postgis-3)"

    if [ ! -f "$data/PG_VERSION" ]; then
        log "creating a private PostgreSQL cluster in $dir"
        mkdir -p "$dir"
        # /tmp is shared: hand over a directory we made, refuse one someone else planted.
        case "$(stat -c %U "$dir")" in
            "$owner") ;;
            "$(id -un)") chown "$owner:" "$dir" ;;
            *) die "$dir belongs to someone else; remove it or set DATABASE_URL" ;;
        esac
        chmod 700 "$dir"
        run_as_pg mkdir -p "$sock"
        # trust auth: the cluster only listens on 127.0.0.1 and a private socket dir.
        run_as_pg "$PG_BINDIR/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C \
            --no-sync >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
        # A throwaway dev/test cluster: durability is not worth the fsync cost.
        run_as_pg tee -a "$data/postgresql.conf" >/dev/null <<CONF

# fieldsync private cluster (deploy/local/ensure-db.sh)
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sock'
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
    fi
    echo "$dir" >"$VAR/pg-private"   # so stop-db.sh knows what we started

    if port="$(running_pg_port "$dir")" && [ -n "$port" ]; then
        log "reusing the private cluster in $dir on port $port"
    else
        # Prefer the port it had last time (stable URLs), else the first free one.
        port="$(cat "$dir/port" 2>/dev/null || echo "$FIRST_PRIVATE_PORT")"
        if port_in_use "$port"; then port="$FIRST_PRIVATE_PORT"; fi
        while port_in_use "$port"; do port=$((port + 1)); done
        log "starting the private cluster in $dir on 127.0.0.1:$port"
        run_as_pg "$PG_BINDIR/pg_ctl" -D "$data" -l "$logfile" -w -t 60 -o "-p $port" start >/dev/null \
            || { tail -n 20 "$logfile" >&2; die "could not start the private cluster"; }
        run_as_pg tee "$dir/port" >/dev/null <<<"$port"
    fi
    for _ in $(seq 60); do
        pg_isready -q -h 127.0.0.1 -p "$port" && break
        sleep 0.5
    done
    pg_isready -q -h 127.0.0.1 -p "$port" || die "private cluster on port $port is not ready"
    echo "$port"
}

# The machine's server counts only if it answers *and* lets user postgres in over
# TCP without a password; Debian's stock pg_hba.conf asks for one.
machine_pg_usable() {
    pg_isready -q -h 127.0.0.1 -p "$PROBE_PORT" || return 1
    if ! psql_admin 127.0.0.1 "$PROBE_PORT" -d postgres -Atc "SELECT 1" >/dev/null 2>&1; then
        log "PostgreSQL on 127.0.0.1:$PROBE_PORT does not let user postgres in without a password;"
        log "using a private cluster instead (set DATABASE_URL to use that server)"
        return 1
    fi
}

choose_database_url() {
    if [ -n "${DATABASE_URL:-}" ]; then
        log "using DATABASE_URL from the environment"
        # Best effort: enable PostGIS if it is a PostgreSQL URL we can reach.
        case "$DATABASE_URL" in
            postgres://*|postgresql://*|postgis://*)
                psql -w -X -q "${DATABASE_URL/#postgis:/postgres:}" \
                    -c "CREATE EXTENSION IF NOT EXISTS postgis" >/dev/null 2>&1 \
                    || log "note: could not ensure the postgis extension via DATABASE_URL" ;;
        esac
        DB_URL="$DATABASE_URL"
    elif machine_pg_usable; then
        log "using the PostgreSQL server on 127.0.0.1:$PROBE_PORT"
        prepare_database 127.0.0.1 "$PROBE_PORT" \
            || die "cannot prepare $DB_NAME as user postgres on 127.0.0.1:$PROBE_PORT (set DATABASE_URL to use another login)"
        DB_URL="postgres://postgres@127.0.0.1:$PROBE_PORT/$DB_NAME"
        ensure_roles 127.0.0.1 "$PROBE_PORT" || die "cannot set up the owner and app roles of $DB_NAME"
    else
        local port
        port="$(ensure_private_cluster)"
        prepare_database 127.0.0.1 "$port" || die "cannot prepare $DB_NAME in the private cluster"
        DB_URL="postgres://postgres@127.0.0.1:$port/$DB_NAME"
        ensure_roles 127.0.0.1 "$port" || die "cannot set up the owner and app roles of $DB_NAME"
    fi
}

# `make run` connects with two roles (deploy/postgres/roles.sql, docs/accountability.md):
# <db>_owner owns the database and every table and runs the migrations; <db>_app is what the
# server, worker and beat log in as. Named after the database, since roles are cluster-wide
# and other checkouts share the machine's server. `make test` keeps the superuser (pytest
# creates its own database).
ensure_roles() {
    local host="$1" port="$2" owner="${DB_NAME}_owner" app="${DB_NAME}_app" owner_pw app_pw
    owner_pw="$(role_password owner)"; app_pw="$(role_password app)"
    psql_admin "$host" "$port" -d "$DB_NAME" -v owner="$owner" -v app="$app" \
        -v owner_pw="$owner_pw" -v app_pw="$app_pw" -v db="$DB_NAME" -f "$ROOT/deploy/postgres/roles.sql" || return 1
    OWNER_URL="postgres://$owner:$owner_pw@$host:$port/$DB_NAME"
    APP_URL="postgres://$app:$app_pw@$host:$port/$DB_NAME"
}

# A stable random password per role and checkout (var/db-<role>-password, 0600).
role_password() {
    local file="$VAR/db-$1-password"
    if [ ! -s "$file" ]; then
        (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(24))' >"$file")
    fi
    cat "$file"
}

# Redis is the Celery broker; start a throwaway one if nothing answers.
ensure_redis() {
    if [ -n "${REDIS_URL:-}" ]; then
        log "using REDIS_URL from the environment"
        return
    fi
    if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
        return
    fi
    log "starting redis-server on 127.0.0.1:$REDIS_PORT"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir "$VAR" --pidfile "$VAR/redis.pid" --logfile "$VAR/redis.log"
    for _ in $(seq 40); do
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return
        sleep 0.25
    done
    die "redis-server did not answer; see $VAR/redis.log"
}

# A stable SECRET_KEY per checkout, so sessions survive restarts.
ensure_secret_key() {
    [ -n "${SECRET_KEY:-}" ] && return
    if [ ! -s "$VAR/secret_key" ]; then
        (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(64))' >"$VAR/secret_key")
    fi
}

APP_URL="" OWNER_URL=""
choose_database_url
ensure_redis
ensure_secret_key

# Values already in the environment are not written: they pass through make as
# they are (and a caller's SECRET_KEY never lands on disk). DATABASE_URL is always
# written so var/env shows which database was chosen.
{
    echo "# Written by deploy/local/ensure-db.sh on every make run/test; do not edit."
    printf 'export DATABASE_URL=%q\n' "$DB_URL"
    # make run's two roles (the Makefile's RUN_ENV); make test keeps DATABASE_URL.
    if [ -n "${APP_URL:-}" ]; then
        printf 'export RUN_DATABASE_URL=%q\n' "$APP_URL"
        printf 'export RUN_DATABASE_OWNER_URL=%q\n' "$OWNER_URL"
    fi
    if [ -z "${REDIS_URL:-}" ]; then
        echo "export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
    fi
    if [ -z "${CELERY_BROKER_URL:-}" ]; then
        printf 'export CELERY_BROKER_URL=%q\n' "${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}"
    fi
    if [ -z "${SECRET_KEY:-}" ]; then
        printf 'export SECRET_KEY=%q\n' "$(cat "$VAR/secret_key")"
    fi
} | (umask 077 && cat >"$VAR/env.tmp")
mv "$VAR/env.tmp" "$VAR/env"

# Print the URL without any password.
echo "DATABASE_URL=$(sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#' <<<"$DB_URL")"
