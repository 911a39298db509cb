"""A push that keeps deadlocking is answered 503 `busy` and leaves nothing behind.

Real deadlocks, not a raised exception: a second session (an operator's script, another
service) holds the row of one record a push edits, waits until the push is blocked on that
row, then asks for the other record the push has already locked. PostgreSQL finds the cycle
and, since the push has waited longest (the other session's `deadlock_timeout` is far longer),
aborts the push with `deadlock_detected`. The push decides the batch again; the session,
having been granted the row, gives it back (rollback to a savepoint) while still holding the
first, and closes the cycle again, every attempt. When the attempts run out the handheld is
told `busy` with `Retry-After`, and the same push sent again afterwards applies.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid

import psycopg
from django.db import connection

from tests.deploy.stack import child_database_url

from .conftest import mutation, observation_data
from .pushkit import assert_error, counts, receipts, versions

ATTEMPTS = 3  # push_apply decides a batch at most this many times


def _deadlocks(conn: psycopg.Connection) -> int:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


def test_a_push_deadlocked_on_every_attempt_is_503_busy_and_changes_nothing(tworld, caplog):
    warden = tworld.enrol("warden")
    ids = sorted(str(uuid.uuid4()) for _ in range(2))  # the push locks them in this order
    first, second = ids
    created = warden.push([mutation("observation", "create", rid, observation_data()) for rid in ids])
    assert [r["status"] for r in created["results"]] == ["applied", "applied"]
    batch = [mutation("observation", "update", rid, {"description": f"edited {rid[:4]}"}, base_version=1)
             for rid in ids]

    connection.ensure_connection()
    push_pid = connection.connection.info.backend_pid  # the test client's requests run on it
    seen: list[tuple[str, str]] = []  # (wait_event_type, wait_event) of the push, every round
    failure: list[BaseException] = []
    holding = threading.Event()

    def other_session() -> None:
        try:
            with psycopg.connect(child_database_url("proofs-deadlocker")) as conn:
                # The push waits first, so its deadlock_timeout expires first and it finds the
                # cycle; a longer timer here makes sure of it where we may set one (superuser).
                try:
                    conn.execute("SET deadlock_timeout = '60s'")
                except psycopg.errors.InsufficientPrivilege:
                    conn.rollback()
                conn.execute("SELECT 1 FROM warden_app_observation WHERE id = %s FOR UPDATE", [second])
                holding.set()
                me = conn.info.backend_pid
                for _ in range(ATTEMPTS):
                    deadline = time.monotonic() + 20
                    while True:  # the push has the first row and waits for ours
                        conn.execute("SELECT pg_stat_clear_snapshot()")
                        row = conn.execute(
                            "SELECT wait_event_type, wait_event, %s = ANY(pg_blocking_pids(pid)) "
                            "FROM pg_stat_activity WHERE pid = %s", [me, push_pid]).fetchone()
                        # Blocked on us, and saying so: the wait event is published a moment
                        # after the block begins, so one read of both can fall in between.
                        if row and row[2] and row[0] == "Lock":
                            seen.append((row[0], row[1]))
                            break
                        assert time.monotonic() < deadline, f"the push never waited on our row: {row}"
                        time.sleep(0.01)
                    conn.execute("SAVEPOINT again")
                    # Blocks until the deadlock detector aborts the push, which frees this row.
                    conn.execute("SELECT 1 FROM warden_app_observation WHERE id = %s FOR UPDATE", [first])
                    conn.execute("ROLLBACK TO SAVEPOINT again")  # gives the first row back
                conn.rollback()
        except BaseException as exc:
            failure.append(exc)
            holding.set()

    with psycopg.connect(child_database_url("proofs-check"), autocommit=True) as check:
        deadlocks_before = _deadlocks(check)
        before = counts()
        thread = threading.Thread(target=other_session)
        thread.start()
        assert holding.wait(20)
        with caplog.at_level(logging.WARNING, logger="fieldsync.sync.push"):
            response = warden.client.post("/api/v1/sync/push", json.dumps({"mutations": batch}),
                                          content_type="application/json", **warden.auth)
        thread.join(30)
        assert not thread.is_alive() and not failure, failure

        body = assert_error(response, 503, "busy")
        assert response["Retry-After"] == "2", body
        # Every attempt really waited on the other session's row lock, and really deadlocked.
        assert len(seen) == ATTEMPTS and all(kind == "Lock" for kind, _ in seen), seen
        failed = [r.getMessage() for r in caplog.records if "push attempt" in r.getMessage()]
        assert failed == [f"push attempt {n} failed with DeadlockDetected" for n in range(1, ATTEMPTS + 1)], failed
        deadline = time.monotonic() + 15  # a backend reports its counters when idle, within seconds
        while _deadlocks(check) - deadlocks_before < ATTEMPTS and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _deadlocks(check) - deadlocks_before == ATTEMPTS

        # Nothing half-applied: no row anywhere, no receipt, the records as they were.
        assert counts() == before
        for m in batch:
            assert receipts(m["mutation_id"]) == []
            assert [v.version for v in versions("observation", m["id"])] == [1]
        untouched = check.execute("SELECT count(*) FROM warden_app_observation WHERE id = ANY(%s::uuid[]) "
                                  "AND version = 1 AND description = %s",
                                  [ids, observation_data()["description"]]).fetchone()[0]
        assert untouched == 2

    # The same push again, with nobody in the way: applied, once.
    again = warden.push(batch)["results"]
    assert [r["status"] for r in again] == ["applied", "applied"], again
    assert [len(receipts(m["mutation_id"])) for m in batch] == [1, 1]
