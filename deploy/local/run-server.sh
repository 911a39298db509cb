#!/usr/bin/env bash
# Runs the web server (gunicorn), a Celery worker and Celery beat in the foreground for
# `make run`, prints where to go and how to sign in, and stops all three on Ctrl-C.
# Expects the environment from var/env (make run sources it).
#
# Beat is its own process, as in production (deploy/README.md: exactly one beat): it queues the
# access log's seal every minute (anchored in var/access-log-anchors.log), thumbnails' and
# escalations' catch-up, exports' expiry and retention.
#
# A clean stop: the three run in sessions of their own (setsid), so the terminal's Ctrl-C
# reaches this script alone; it then asks each for a graceful stop once (TERM: gunicorn
# finishes its requests, the worker its tasks), instead of all of them getting the terminal's
# INT and the script's TERM on top (a cold shutdown of the worker, and the tracebacks of
# interrupted processes).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

PORT="${PORT:-8000}"
BIN="$ROOT/.venv/bin"
BASE="http://127.0.0.1:$PORT"
mkdir -p "$VAR"

if port_in_use "$PORT"; then
    die "127.0.0.1:$PORT is already in use (another make run?); set PORT=... to use another"
fi

pids=()
names=()
stop_children() {
    trap - INT TERM HUP EXIT
    [ "${#pids[@]}" -gt 0 ] || return 0
    log "stopping the server, the worker and beat"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    # Give them time for a graceful shutdown, then make sure they are gone.
    for _ in $(seq 80); do
        alive=()
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
        [ "${#alive[@]}" -eq 0 ] && break
        sleep 0.25
    done
    for i in "${!pids[@]}"; do
        if kill -0 "${pids[$i]}" 2>/dev/null; then
            log "${names[$i]} did not stop in 20 s; killing it"
            kill -KILL -- "-${pids[$i]}" 2>/dev/null || kill -KILL "${pids[$i]}" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
    log "stopped"
}
trap 'stop_children; exit 130' INT
trap 'stop_children; exit 143' TERM
trap 'stop_children; exit 129' HUP
trap 'stop_children' EXIT

start() {  # start NAME COMMAND...: in a session of its own (see above)
    local name="$1"
    shift
    setsid "$@" &
    pids+=($!)
    names+=("$name")
}

start server "$BIN/gunicorn" fieldsync.wsgi --bind "127.0.0.1:$PORT" --workers 2 \
    --graceful-timeout 10 --access-logfile -
# --quiet: no start-up banners of their own, which would push the one below off the screen.
start worker "$BIN/celery" -A fieldsync --quiet worker -l info --without-mingle --without-gossip
# --pidfile= : no pid file (beat refuses to start while a stale one from a killed run exists).
start beat "$BIN/celery" -A fieldsync --quiet beat -l info -s "${BEAT_SCHEDULE:-$VAR/celerybeat-schedule}" --pidfile=
log "server pid ${pids[0]}, worker pid ${pids[1]}, beat pid ${pids[2]}"

# Print the banner once the server answers, so the URLs work when shown.
for _ in $(seq 120); do
    port_in_use "$PORT" && break
    kill -0 "${pids[0]}" 2>/dev/null || break
    sleep 0.25
done

if [ -n "${DEMO_PASSWORD:-}" ]; then password="the value of DEMO_PASSWORD"; else password="fieldsync-demo"; fi
# The same URLs and logins as README.md ("make run").
cat <<BANNER

  fieldsync is running - Ctrl-C stops the server, the worker and beat

  Front door        $BASE/               sign in here: each role's home lists its doors
  Handheld app      $BASE/warden/        wardens and PCSOs (and supervisors)
  Review desk       $BASE/review/        supervisors
  Analysis          $BASE/analysis/      analysts, supervisors, admins
  Partner dashboard $BASE/partner/       partners, analysts, supervisors, admins
  Data protection   $BASE/dpo/           the DPO
  Admin             $BASE/admin/         admins (and the DPO: the access log)
  API docs          $BASE/api/docs/      OpenAPI; schema at $BASE/api/schema/

  Demo logins (password: $password)
    warden_leigh, warden_wigan (wardens)   pcso_leigh (PCSO)   supervisor_leigh (supervisor)
    analyst (analyst)   partner_fire (partner viewer)   dpo (DPO)   admin (admin)

BANNER

# Run until Ctrl-C, or until any of the three dies (then stop the others too).
status=0
wait -n "${pids[@]}" || status=$?
log "a process exited (status $status); shutting down"
exit "$status"
