#!/usr/bin/env bash
# Runs the web server (gunicorn) and a Celery worker (with beat) in the foreground for
# `make run`, prints where to go and how to log in, and stops both on Ctrl-C.
# Expects the environment from var/env (make run sources it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

PORT="${PORT:-8000}"
BIN="$ROOT/.venv/bin"
BASE="http://127.0.0.1:$PORT"

if port_in_use "$PORT"; then
    die "127.0.0.1:$PORT is already in use (another make run?); set PORT=... to use another"
fi

pids=()
stop_children() {
    trap - INT TERM EXIT
    [ "${#pids[@]}" -gt 0 ] || return 0
    log "stopping the server and the worker"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    # Give them time for a graceful shutdown, then make sure they are gone.
    for _ in $(seq 60); do
        alive=()
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
        [ "${#alive[@]}" -eq 0 ] && break
        sleep 0.25
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap 'stop_children; exit 130' INT
trap 'stop_children; exit 143' TERM
trap 'stop_children' EXIT

"$BIN/gunicorn" fieldsync.wsgi --bind "127.0.0.1:$PORT" --workers 2 \
    --graceful-timeout 10 --access-logfile - &
gunicorn_pid=$!
pids+=("$gunicorn_pid")
# -B: the periodic tasks too (the access log's seal every minute, which anchors its head in
# var/access-log-anchors.log), as one process; production runs beat on its own.
"$BIN/celery" -A fieldsync worker -B -s "$ROOT/var/celerybeat-schedule" -l info &
pids+=($!)

# Print the banner once the server answers, so the URLs work when shown.
for _ in $(seq 120); do
    port_in_use "$PORT" && break
    kill -0 "$gunicorn_pid" 2>/dev/null || break
    sleep 0.25
done

if [ -n "${DEMO_PASSWORD:-}" ]; then password="the value of DEMO_PASSWORD"; else password="fieldsync-demo"; fi
cat <<BANNER

  fieldsync is running - Ctrl-C stops the server and the worker

  Admin           $BASE/admin/
  API docs        $BASE/api/docs/
  API schema      $BASE/api/schema/
  Warden app      $BASE/warden/
  Review          $BASE/review/

  Demo logins (password: $password)
    warden_leigh  warden_wigan  pcso_leigh  supervisor_leigh
    analyst  partner_fire  dpo  admin

BANNER

# Run until Ctrl-C, or until either process dies (then stop the other too).
status=0
wait -n "${pids[@]}" || status=$?
log "a process exited (status $status); shutting down"
exit "$status"
