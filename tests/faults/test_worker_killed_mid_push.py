"""A gunicorn worker SIGKILLed while its push is half written.

The push is held inside its transaction, after it has written records, versions and change-feed
rows, by a lock this test takes from another connection; pg_stat_activity and pg_locks show
where it stands. The worker holding that database session is then killed. Nothing of the push
may remain, and the handheld's resend of the same push must be applied, once.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.deploy.stack import child_database_url

from .support import RECORD_TABLES, HttpHandheld, outbox_batch, stored, table_counts, wait_until

# A hang fails in two minutes, not the suite's ten; pytest-timeout (SIGALRM) fails the test where it
# stands, so the fixtures still stop every process.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def stalled_sessions(conn: psycopg.Connection) -> list[tuple]:
    """The app server's sessions waiting for a lock: a push stopped mid-transaction."""
    return conn.execute(
        "SELECT pid, client_port, state, backend_xid IS NOT NULL, xact_start IS NOT NULL, query "
        "FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'fieldsync-app' "
        "AND wait_event_type = 'Lock'"
    ).fetchall()


def relation_locks(conn: psycopg.Connection, pid: int) -> tuple[set[str], set[str]]:
    """Tables a session holds for writing (RowExclusiveLock, taken by its first write to each)
    and tables it waits for."""
    rows = conn.execute(
        "SELECT c.relname, l.mode, l.granted FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE l.pid = %s AND l.locktype = 'relation'",
        [pid],
    ).fetchall()
    written = {name for name, mode, granted in rows if granted and mode == "RowExclusiveLock"}
    waiting = {name for name, _mode, granted in rows if not granted}
    return written, waiting


def process_with_local_port(pids: list[int], port: int) -> int | None:
    """Which of `pids` owns the TCP socket whose local port is `port` (the client end of a
    database session, which pg_stat_activity reports as client_port)."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    sockets.add(f"socket:[{fields[9]}]")
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in sockets:
                        return pid
    return None


def test_worker_killed_mid_push_leaves_nothing_and_the_resend_applies_once(world, stack, check_db):
    stack.start_gunicorn(workers=2)
    handheld = HttpHandheld.enrol(stack.base_url, "warden", "Handheld 1")
    mutations, records = outbox_batch("killed")
    mutation_ids = [m["mutation_id"] for m in mutations]
    before = table_counts(check_db)

    sent: dict[str, object] = {}

    def send() -> None:
        try:
            sent["response"] = handheld.push(mutations)
        except httpx.HTTPError as exc:
            sent["error"] = exc

    # Not autocommit: the lock lasts until this connection's transaction ends.
    holder = psycopg.connect(child_database_url("faults-lock-holder"))
    pusher = threading.Thread(target=send, daemon=True)
    try:
        # EXCLUSIVE, not ACCESS EXCLUSIVE: the push reads its receipts first, and that read must
        # go through; only writes to sync_receipt wait. So the push stalls at its receipts,
        # after it has written its records, their versions and the change feed.
        holder.execute("LOCK TABLE sync_receipt IN EXCLUSIVE MODE")
        pusher.start()
        wait_until(lambda: len(stalled_sessions(check_db)) == 1, "the push waiting on the lock", 20,
                   lambda: stack.processes.log("gunicorn")[-3000:])
        [(backend, client_port, state, has_xid, in_transaction, query)] = stalled_sessions(check_db)
        # Waiting inside its transaction, which has written (a transaction id is assigned on
        # the first write), at the statement that writes the receipts.
        assert state == "active" and in_transaction and has_xid, (state, in_transaction, has_xid)
        assert query.lstrip().startswith("COPY sync_receipt"), query
        written, waiting = relation_locks(check_db, backend)
        assert waiting == {"sync_receipt"}, waiting
        assert {*RECORD_TABLES, "sync_recordversion", "sync_change"} <= written, written
        assert "response" not in sent and "error" not in sent, sent

        # SIGKILL exactly the worker whose socket is the client end of that session.
        workers = stack.gunicorn_workers()
        victim = process_with_local_port(workers, client_port)
        assert victim is not None, f"no worker of {workers} holds the session from port {client_port}"
        os.kill(victim, signal.SIGKILL)
        pusher.join(15)
        assert not pusher.is_alive(), "the handheld never heard of the lost connection"
        # The handheld got no answer at all: for it the push may or may not have happened.
        assert isinstance(sent.get("error"), httpx.TransportError), sent
    finally:
        holder.rollback()
        holder.close()

    # The orphaned session goes once it can run again: it finds its client gone, rolls back, ends.
    wait_until(lambda: not check_db.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [backend]).fetchall(),
               "the killed worker's session ending", 15)
    assert table_counts(check_db) == before, "the killed push left rows behind"
    assert check_db.execute("SELECT last_push_at FROM sync_device WHERE id = %s",
                            [handheld.device_id]).fetchone() == (None,)
    # The master replaced the worker by itself.
    wait_until(lambda: len(stack.gunicorn_workers()) == 2 and victim not in stack.gunicorn_workers(),
               "gunicorn replacing the killed worker", 30, lambda: stack.processes.log("gunicorn")[-3000:])

    # The handheld resends the same push: every mutation is new to the server, so applied.
    resend = handheld.push(mutations)
    assert resend.status_code == 200, resend.text
    results = resend.json()["results"]
    assert [r["mutation_id"] for r in results] == mutation_ids
    assert [r["status"] for r in results] == ["applied"] * len(mutations), results
    assert [r["version"] for r in results] == [1 if m["op"] == "create" else 2 for m in mutations]
    # ...and once: a further resend changes nothing.
    again = handheld.push(mutations)
    assert again.status_code == 200, again.text
    assert [r["status"] for r in again.json()["results"]] == ["duplicate"] * len(mutations)

    found = stored(check_db, mutation_ids, records)
    assert found["receipts"] == dict.fromkeys(mutation_ids, 1)
    assert found["versions"] == dict.fromkeys(mutation_ids, 1)
    assert found["records"] == dict.fromkeys(records, 1)
    assert all(found["feed"][record] >= 1 for record in records), found["feed"]
    descriptions = check_db.execute("SELECT description FROM warden_app_observation ORDER BY description").fetchall()
    assert descriptions == [("killed/0 edited",), ("killed/1 edited",)]
    handheld.close()
