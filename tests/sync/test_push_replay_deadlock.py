"""The one-by-one replay of a push (push._push_one_by_one) meets a real deadlock with another
transaction. A deadlock is the moment's, not the mutation's: the mutation is decided again,
never stored as a permanent `constraint_violation` rejection.

Two real PostgreSQL connections: the push (through the protocol, on the test's thread) and a
supervisor's transaction on a thread of its own that locks the two records in the opposite
order."""
from __future__ import annotations

import logging
import threading
import time
import uuid

import psycopg
import pytest
from django.db import IntegrityError, OperationalError, connection, connections, transaction

from .conftest import mutation, observation_data
from .pushkit import quarantined


def _lock_row(cursor, record_id) -> None:
    cursor.execute("SELECT 1 FROM warden_app_observation WHERE id = %s FOR UPDATE", [record_id])


def _push_waiting_on_a_lock(timeout: float = 10.0) -> bool:
    with connection.cursor() as cursor:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                           "AND datname = current_database() AND pid <> pg_backend_pid()")
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.02)
    return False


@pytest.mark.timeout(60)
def test_a_deadlock_in_the_replay_is_tried_again_not_stored_as_a_refusal(tworld, monkeypatch, caplog):
    from fieldsync.sync import push

    warden = tworld.enrol("warden")
    first, second = uuid.uuid4(), uuid.uuid4()
    for record_id in (first, second):
        assert warden.push_one(mutation("observation", "create", record_id, observation_data()))["status"] == "applied"

    # The batch path refused once, as an unforeseen constraint would: the push is replayed
    # one mutation at a time, each in its savepoint, for real.
    real_batch, calls = push._push_batch, []

    def refused_once(user, device, parsed):
        calls.append(len(parsed))
        if len(calls) == 1:
            error = IntegrityError("check")
            error.__cause__ = psycopg.errors.CheckViolation("check")
            raise error
        return real_batch(user, device, parsed)

    monkeypatch.setattr(push, "_push_batch", refused_once)

    holding_second, other = threading.Event(), {}

    def supervisor_locks_second_then_first():
        try:
            with transaction.atomic(), connections["default"].cursor() as cursor:
                _lock_row(cursor, second)
                holding_second.set()
                # The push holds the first record (its first mutation) once it waits on this one.
                # It waited first, so its deadlock check (after deadlock_timeout) runs first:
                # the push's savepoint is the first victim, and the replay must survive it.
                assert _push_waiting_on_a_lock(), "the push never waited on the second record"
                _lock_row(cursor, first)
                other["outcome"] = "locked both"
        except OperationalError as exc:
            other["outcome"] = type(exc.__cause__).__name__
        finally:
            connections["default"].close()

    thread = threading.Thread(target=supervisor_locks_second_then_first)
    thread.start()
    assert holding_second.wait(10)
    caplog.set_level(logging.WARNING, logger="fieldsync.sync.push")
    mutations = [mutation("observation", "update", record_id, {"description": f"edited {n}"}, base_version=1)
                 for n, record_id in enumerate((first, second))]
    results = warden.push(mutations)["results"]
    thread.join(30)

    assert calls == [2], "the batch path ran once, then the replay"
    assert any("DeadlockDetected" in r.getMessage() for r in caplog.records), "no deadlock reached the replay"
    assert [r["status"] for r in results] == ["applied", "applied"], results
    assert not quarantined(mutations[1]["mutation_id"])
    # The second cycle's victim was the supervisor's transaction: the push went on.
    assert other["outcome"] == "DeadlockDetected"
    again = warden.push(mutations)["results"]
    assert [r["status"] for r in again] == ["duplicate", "duplicate"]
