#!/bin/sh
# The postgis image runs this once, on an empty data volume (/docker-entrypoint-initdb.d/):
# the owner and application roles of deploy/postgres/roles.sql. For a volume made before,
# run it by hand once: docker compose exec db sh /docker-entrypoint-initdb.d/20-fieldsync-roles.sh
set -eu
: "${POSTGRES_OWNER_PASSWORD:?set POSTGRES_OWNER_PASSWORD}" "${POSTGRES_APP_PASSWORD:?set POSTGRES_APP_PASSWORD}"
psql -v ON_ERROR_STOP=1 -X -q --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v owner=fieldsync_owner -v app=fieldsync_app -v db="$POSTGRES_DB" \
    -v owner_pw="$POSTGRES_OWNER_PASSWORD" -v app_pw="$POSTGRES_APP_PASSWORD" \
    -f /fieldsync/roles.sql
