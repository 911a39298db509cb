"""The access log's hash chain: sealed in xid order below the horizon by a separate step,
so logging never waits; the trigger lets only that seal through; `verify_access_log`
finds an edited row, a deleted one, and (with an anchor) a chain cut short. Concurrency
claims run on real concurrent PostgreSQL transactions."""
from __future__ import annotations

import io
import threading
import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from warden_app.accountability.chain import GENESIS, link_hash
from warden_app.accountability.selectors import access_log_verify
from warden_app.accountability.services.access_log import SEAL_LOCK_KEY, access_log_seal
from warden_app.models import AccessLogEntry, Observation
from warden_app.services.access_log import access_log_records, access_log_records_matching

TABLE = "warden_app_accesslogentry"


def log_row(purpose: str = "", **extra) -> AccessLogEntry:
    return access_log_records(user=None, action="consultation", record_type="observation",
                              record_ids=[uuid.uuid4()], purpose=purpose, **extra)


def chain() -> list[dict]:
    return list(AccessLogEntry.objects.filter(seq__isnull=False).order_by("seq")
                .values("id", "seq", "prev_hash", "hash", "purpose"))


def without_trigger(sql: str, params=()) -> None:
    """What a database superuser could do: switch the append-only trigger off, change the
    table, switch it back on."""
    with connection.cursor() as cursor:
        # Deferred foreign-key checks of this test's transaction must run before ALTER TABLE.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER access_log_append_only")
        cursor.execute(sql, params)
        cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER access_log_append_only")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def verify_command(*args) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_access_log", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code), out.getvalue() + err.getvalue()
    return 0, out.getvalue() + err.getvalue()


def test_sealing_chains_every_committed_row_in_turn(world):
    world.observe()  # its push logs a collection row
    rows = [log_row(purpose=f"row {n}", details={"n": n, "text": "naïve ✓"}) for n in range(3)]
    # The set-based insert (INSERT … SELECT) names no xid: the table stamps it all the same.
    raw_id = access_log_records_matching(user=world.users["analyst"], action="consultation",
                                         record_type="observation",
                                         ids=Observation.objects.values_list("id", flat=True))
    expected = list(AccessLogEntry.objects.order_by("id").values_list("id", flat=True))
    assert raw_id == expected[-1] and len(expected) == 5
    assert AccessLogEntry.objects.filter(seq__isnull=False).count() == 0  # logging wrote no seal

    sealed = access_log_seal()

    assert sealed.rows == 5
    links = chain()
    assert [r["id"] for r in links] == expected and [r["seq"] for r in links] == [1, 2, 3, 4, 5]
    assert [r["id"] for r in links[1:4]] == [r.pk for r in rows]
    assert links[0]["prev_hash"] == GENESIS
    assert [r["prev_hash"] for r in links[1:]] == [r["hash"] for r in links[:-1]]
    assert (sealed.head_seq, sealed.head_hash) == (5, links[-1]["hash"])
    assert access_log_seal().rows == 0  # nothing new: the chain stays as it was
    result = access_log_verify()
    assert result.ok and result.checked == 5 and result.unsealed == 0
    code, out = verify_command()
    assert code == 0 and f"head seq 5 hash {links[-1]['hash']}" in out

    more = log_row()
    assert access_log_seal().rows == 1
    assert AccessLogEntry.objects.get(pk=more.pk).seq == 6
    assert access_log_verify().ok


def test_hash_covers_the_whole_row():
    row = {"id": 1, "xid": 7, "at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "actor_id": None,
           "action": "erasure", "record_type": "observation", "record_ids": [uuid.UUID(int=1)], "device_id": None,
           "recipient": "", "purpose": "p", "details": {"b": 1, "a": 2}}
    base = link_hash(GENESIS, row, 1)
    assert base == link_hash(GENESIS, {**row, "details": {"a": 2, "b": 1}}, 1)  # key order is not content
    for change in ({"purpose": "q"}, {"record_ids": [uuid.UUID(int=2)]}, {"xid": 8}, {"actor_id": 3},
                   {"details": {"a": 2, "b": 2}}):
        assert link_hash(GENESIS, {**row, **change}, 1) != base, change
    assert link_hash(GENESIS, row, 2) != base  # the position too
    assert link_hash("1" * 64, row, 1) != base  # and what came before


def test_trigger_refuses_everything_but_the_one_seal(db):
    entry = log_row()
    statements = [
        ("UPDATE {t} SET purpose = 'x' WHERE id = %s", "append-only"),
        # A seal that also changes content is no seal.
        ("UPDATE {t} SET seq = 1, prev_hash = repeat('0', 64), hash = repeat('1', 64), purpose = 'x' "
         "WHERE id = %s", "append-only"),
        ("UPDATE {t} SET seq = 1 WHERE id = %s", "append-only"),  # half a seal
        ("UPDATE {t} SET xid = 1, seq = 1, prev_hash = repeat('0', 64), hash = repeat('1', 64) "
         "WHERE id = %s", "append-only"),
        ("DELETE FROM {t} WHERE id = %s", "append-only"),
    ]
    for sql, message in statements:
        with pytest.raises(Exception, match=message), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql.format(t=TABLE), [entry.pk])
    access_log_seal()
    sealed = AccessLogEntry.objects.get(pk=entry.pk)
    assert sealed.seq == 1
    # Sealed once: a second seal (say, to re-hash an edited chain) is refused too.
    with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET seq = 99, prev_hash = repeat('0', 64), hash = repeat('2', 64) "
                       "WHERE id = %s", [entry.pk])
    # An insert cannot arrive sealed, nor choose its xid.
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (at, action, record_type, record_ids, recipient, purpose, details, xid, seq, "
            "prev_hash, hash) VALUES (now(), 'consultation', 'observation', '{}', '', '', '{}', 1, 500, "
            "repeat('0', 64), repeat('3', 64)) RETURNING id, xid, seq, hash, pg_current_xact_id()::text::bigint"
        )
        _, xid, seq, digest, current = cursor.fetchone()
    assert (xid, seq, digest) == (current, None, None)
    assert AccessLogEntry.objects.get(pk=entry.pk).purpose == ""


def test_an_edited_row_is_found(db):
    for n in range(4):
        log_row(purpose=f"purpose {n}")
    access_log_seal()
    second = chain()[1]
    without_trigger(f"UPDATE {TABLE} SET purpose = 'innocent' WHERE id = %s", [second["id"]])

    result = access_log_verify()
    assert not result.ok and result.broken_seq == 2 and result.broken_id == second["id"]
    assert "altered" in result.problem and result.checked == 1
    code, out = verify_command()
    assert code == 1 and "seq 2" in out and "altered" in out


def test_a_deleted_row_leaves_a_gap(db):
    for _ in range(4):
        log_row()
    access_log_seal()
    third = chain()[2]
    without_trigger(f"DELETE FROM {TABLE} WHERE id = %s", [third["id"]])

    result = access_log_verify()
    assert not result.ok and result.broken_seq == 4 and "seq 3 is missing" in result.problem
    code, out = verify_command()
    assert code == 1 and "seq 3 is missing" in out


def test_a_rehashed_chain_or_a_cut_end_needs_an_anchor(db):
    """A superuser can delete the newest rows (and their seal), or rewrite every hash after
    an edit; the database alone cannot tell. A head kept outside the database (printed by
    the command; written by every seal to ACCESS_LOG_ANCHOR: test_anchors.py) can."""
    for _ in range(3):
        log_row()
    access_log_seal()
    head = chain()[-1]
    anchor = f"{head['seq']}:{head['hash']}"
    assert verify_command("--anchor", anchor)[0] == 0
    without_trigger(f"DELETE FROM {TABLE} WHERE id = %s", [head["id"]])
    # The seal recorded in the database names the lost head…
    assert "beyond the end of the chain" in access_log_verify().problem
    with connection.cursor() as cursor:  # …so the attacker removes that too
        cursor.execute("ALTER TABLE warden_app_accesslogseal DISABLE TRIGGER access_log_seal_append_only")
        cursor.execute("DELETE FROM warden_app_accesslogseal WHERE head_seq = %s", [head["seq"]])
        cursor.execute("ALTER TABLE warden_app_accesslogseal ENABLE TRIGGER access_log_seal_append_only")
    assert access_log_verify().ok  # the chain and the database's seals hold…
    code, out = verify_command("--anchor", anchor)
    assert code == 1 and "beyond the end of the chain" in out  # …but not the anchor
    with pytest.raises(CommandError, match="expected SEQ:HASH"):
        verify_command("--anchor", "nonsense")


# --- real concurrent transactions ------------------------------------------------------------

def raw_connection() -> psycopg.Connection:
    settings = connection.settings_dict
    return psycopg.connect(dbname=settings["NAME"], user=settings["USER"], password=settings["PASSWORD"] or None,
                           host=settings["HOST"] or None, port=settings["PORT"] or None)


def raw_log(conn: psycopg.Connection, purpose: str) -> int:
    return conn.execute(
        f"INSERT INTO {TABLE} (at, action, record_type, record_ids, recipient, purpose, details) "
        "VALUES (now(), 'consultation', 'observation', '{}', '', %s, '{}') RETURNING id", [purpose],
    ).fetchone()[0]


def test_a_late_commit_is_never_chained_behind(transactional_db):
    """T1 starts first (smaller xid) and logs last (larger id); T2 logs and commits in
    between. While T1 runs nothing at or above its xid is sealed, T2's row included; once
    T1 commits, its row takes its place in front of T2's. No sealed row ever has to move."""
    early, late, rolled_back = raw_connection(), raw_connection(), raw_connection()
    try:
        early.execute("SELECT pg_current_xact_id()")  # T1 holds the smaller xid from here on
        before = raw_log(late, "T2")
        late.commit()
        rolled_back.execute("SELECT 1")
        raw_log(rolled_back, "T3")
        rolled_back.rollback()
        after = raw_log(early, "T1")
        assert after > before

        assert access_log_seal().rows == 0  # T2 is committed, but T1 (older) still runs
        assert AccessLogEntry.objects.get(pk=before).seq is None

        early.commit()
        assert access_log_seal().rows == 2
        assert [r["purpose"] for r in chain()] == ["T1", "T2"]  # xid order, not id order
        assert access_log_verify().ok
        assert not AccessLogEntry.objects.filter(purpose="T3").exists()
    finally:
        for conn in (early, late, rolled_back):
            conn.close()


def test_logging_never_waits_for_the_sealer(transactional_db):
    sealer = raw_connection()
    try:
        sealer.execute("SELECT pg_advisory_xact_lock(%s)", [SEAL_LOCK_KEY])  # a seal in progress
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = '2s'")
            try:
                entry = log_row(purpose="while sealing")  # would time out if logging queued
            finally:
                cursor.execute("SET statement_timeout = 0")
        assert entry.pk
    finally:
        sealer.rollback()
        sealer.close()
    assert access_log_seal().rows == 1


def test_concurrent_sealers_build_one_chain(transactional_db):
    for n in range(40):
        log_row(purpose=str(n))
    results, errors = [], []

    def seal():
        try:
            results.append(access_log_seal(batch=7).rows)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=seal) for _ in range(4)]
    gate = raw_connection()  # holds the seal lock until all four sealers wait on it: they overlap
    try:
        gate.execute("SELECT pg_advisory_xact_lock(%s)", [SEAL_LOCK_KEY])
        for thread in threads:
            thread.start()
        waiting, deadline = 0, time.monotonic() + 30
        while waiting < 4:
            assert time.monotonic() < deadline, f"{waiting} sealers waiting on the seal lock"
            time.sleep(0.02)
            with raw_connection() as watch:
                waiting = watch.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND objid::bigint = %s AND objsubid = 1", [SEAL_LOCK_KEY & 0xFFFFFFFF]).fetchone()[0]
    finally:
        gate.rollback()
        gate.close()
    for thread in threads:
        thread.join(60)
    assert not errors and sum(results) == 40
    assert [r["seq"] for r in chain()] == list(range(1, 41))
    assert access_log_verify().ok
