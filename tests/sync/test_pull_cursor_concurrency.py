"""The pull guarantee (protocol section 5): every committed change in scope appears after
any cursor the server handed out, even when a change whose number was taken earlier
commits later. Real concurrent transactions: each writer is a thread with its own
database connection, pushing through the push service inside a transaction it holds open.
"""
from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from collections import Counter

import pytest
from django.db import connection, transaction

from fieldsync import db

from ..statements import Watched
from .conftest import mutation, observation_data
from .pull_support import caught_up, cursor_body, pull_caught_up

WAIT = 20  # seconds: generous bounds on thread hand-offs, never reached when all is well


class HeldPush(threading.Thread):
    """Pushes `mutations` through `push_apply` inside a transaction it keeps open until
    released; optionally takes its transaction id before anything else happens."""

    def __init__(self, username: str, device_id: str, mutations: list[dict], *, take_xid_first: bool = False):
        super().__init__(daemon=True)
        self.username, self.device_id, self.mutations = username, device_id, mutations
        self.take_xid_first = take_xid_first
        self.xid_taken = threading.Event()
        self.go = threading.Event()  # push (when the xid was taken first)
        self.written = threading.Event()
        self.release = threading.Event()
        self.results: list[dict] | None = None
        self.xid: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        from fieldsync.sync.models import Device
        from fieldsync.sync.push import push_apply
        from warden_app.models import User

        try:
            user = User.objects.get(username=self.username)
            device = Device.objects.get(pk=self.device_id)
            with transaction.atomic():
                with connection.cursor() as c:
                    if self.take_xid_first:
                        c.execute("SELECT pg_current_xact_id()::text::bigint")
                        self.xid = c.fetchone()[0]
                        self.xid_taken.set()
                        assert self.go.wait(WAIT)
                    self.results = push_apply(user=user, device=device, mutations=self.mutations)
                    c.execute("SELECT pg_current_xact_id()::text::bigint")
                    self.xid = c.fetchone()[0]
                self.written.set()
                assert self.release.wait(WAIT)
        except BaseException as exc:  # reported by finish()
            self.error = exc
            self.xid_taken.set()
            self.written.set()
        finally:
            connection.close()

    def finish(self) -> list[dict]:
        self.release.set()
        self.go.set()
        self.join(WAIT)
        assert not self.is_alive()
        if self.error:
            raise self.error
        return self.results


def positions(token: str) -> dict[str, tuple[int, int]]:
    return {key: (p[0], p[1]) for key, p in cursor_body(token)["k"].items()}


def create(record_id: str) -> dict:
    return mutation("observation", "create", record_id, observation_data())


def test_a_change_committing_after_a_later_one_is_not_skipped(tworld):
    """A takes its number first and commits last; B commits in between. A reader pulling
    in between must not move its cursor past A, and sees A once A commits."""
    reader = tworld.enrol("supervisor")
    reader.pull_all()
    a_device, b_device = tworld.enrol("warden"), tworld.enrol("warden2")
    a_id, b_id = str(uuid.uuid4()), str(uuid.uuid4())

    a = HeldPush("warden", a_device.device_id, [create(a_id)])
    a.start()
    assert a.written.wait(WAIT)
    try:
        assert b_device.push_one(create(b_id))["status"] == "applied"  # B committed

        changes = reader.pull_all(limit=1)
        # B's transaction id is above A's: the horizon holds B back until A has ended.
        assert [c["id"] for c in changes] == []
        held_cursor = reader.cursor
        for key, position in positions(held_cursor).items():
            assert position < (a.xid, 0), (key, position, a.xid)
        # Pulling again while A is open changes nothing.
        assert reader.pull_all() == []
    finally:
        results = a.finish()
    assert results[0]["status"] == "applied"

    changes = pull_caught_up(reader, limit=1)
    assert sorted(c["id"] for c in changes) == sorted([a_id, b_id])
    assert all(c["op"] == "upsert" for c in changes)
    # Any cursor handed out earlier still leads to both.
    for _ in range(200):
        page = reader.pull(cursor=held_cursor)
        if caught_up(page["cursor"]):
            break
        time.sleep(0.02)
    assert {a_id, b_id} <= {c["id"] for c in page["changes"]}


def test_a_transaction_with_an_early_id_that_writes_last_is_not_skipped(tworld):
    """A gets its transaction id first but writes the feed only after B has committed."""
    reader = tworld.enrol("supervisor")
    reader.pull_all()
    a_device, b_device = tworld.enrol("warden"), tworld.enrol("pcso")
    a_id, b_id = str(uuid.uuid4()), str(uuid.uuid4())

    a = HeldPush("warden", a_device.device_id, [create(a_id)], take_xid_first=True)
    a.start()
    assert a.xid_taken.wait(WAIT)
    try:
        assert b_device.push_one(create(b_id))["status"] == "applied"
        assert reader.pull_all() == []  # B waits behind A's open transaction
        a.go.set()
        assert a.written.wait(WAIT)
        assert reader.pull_all() == []  # A written, not committed
        for position in positions(reader.cursor).values():
            assert position < (a.xid, 0)
    finally:
        a.finish()
    assert sorted(c["id"] for c in pull_caught_up(reader)) == sorted([a_id, b_id])


def test_a_rolled_back_change_never_appears_and_does_not_block(tworld):
    reader = tworld.enrol("supervisor")
    reader.pull_all()
    a_device, b_device = tworld.enrol("warden"), tworld.enrol("warden2")
    a_id, b_id = str(uuid.uuid4()), str(uuid.uuid4())

    class Aborted(Exception):
        pass

    def run() -> None:
        from fieldsync.sync.models import Device
        from fieldsync.sync.push import push_apply
        from warden_app.models import User

        try:
            with transaction.atomic():
                push_apply(user=User.objects.get(username="warden"),
                           device=Device.objects.get(pk=a_device.device_id), mutations=[create(a_id)])
                written.set()
                assert release.wait(WAIT)
                raise Aborted
        except Aborted:
            pass
        finally:
            connection.close()

    written, release = threading.Event(), threading.Event()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert written.wait(WAIT)
    try:
        assert b_device.push_one(create(b_id))["status"] == "applied"
        assert reader.pull_all() == []
    finally:
        release.set()
        thread.join(WAIT)
    assert [c["id"] for c in pull_caught_up(reader)] == [b_id]


def test_an_update_committing_late_reaches_a_reader_that_already_has_the_record(tworld):
    """The record's feed rows are rewritten in place: an update held open while later
    changes commit is still delivered, with its version."""
    author = tworld.enrol("warden")
    record_id = str(uuid.uuid4())
    assert author.push_one(create(record_id))["status"] == "applied"
    reader = tworld.enrol("supervisor")
    pull_caught_up(reader)
    assert reader.store[("observation", record_id)]["version"] == 1

    edit = mutation("observation", "update", record_id, {"description": "edited late"}, base_version=1)
    a = HeldPush("warden", author.device_id, [edit])
    a.start()
    assert a.written.wait(WAIT)
    other = str(uuid.uuid4())
    try:
        assert tworld.enrol("warden2").push_one(create(other))["status"] == "applied"
        assert reader.pull_all() == []
    finally:
        a.finish()
    changes = pull_caught_up(reader)
    assert sorted(c["id"] for c in changes) == sorted([record_id, other])
    assert reader.store[("observation", record_id)]["version"] == 2
    assert reader.store[("observation", record_id)]["data"]["description"] == "edited late"


def _session_on(database: str, name: str):
    """An autocommit-off session of its own on `database` of the test database's cluster."""
    import psycopg

    from tests.deploy.stack import child_database_url

    url = child_database_url(name)
    here = connection.settings_dict["NAME"]
    return psycopg.connect(url.replace(f"/{here}?", f"/{database}?", 1))


def test_a_writer_in_another_database_of_the_cluster_does_not_hold_pulls_back(tworld):
    """Transaction ids are cluster-wide, so a transaction of another database (another app on
    the same server) is in every snapshot's running list; it cannot write our feed, and the
    horizon leaves it out (pg_stat_activity names its database). Its twin in this database,
    which might write the feed, does hold pulls back: the contrast shows the check is real."""
    reader = tworld.enrol("supervisor")
    pull_caught_up(reader)
    author = tworld.enrol("warden")
    with _session_on("postgres", "proofs-other-db") as other:
        other_xid = other.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0]
        record_id = str(uuid.uuid4())
        assert author.push_one(create(record_id))["status"] == "applied"
        with connection.cursor() as c:
            # The overlap: the other database's writer is running, below our change, in our snapshot.
            c.execute("SELECT pg_stat_clear_snapshot()")
            c.execute("SELECT datname FROM pg_stat_activity WHERE backend_xid::text::bigint = %s", [other_xid])
            assert c.fetchall() == [("postgres",)]
            c.execute("SELECT %s::text::xid8 = ANY(ARRAY(SELECT pg_snapshot_xip(pg_current_snapshot()))), "
                      "(SELECT min(xid) FROM sync_change WHERE record_id = %s)", [other_xid, record_id])
            running, change_xid = c.fetchone()
        assert running and other_xid < change_xid
        assert [c["id"] for c in reader.pull_all()] == [record_id]
        # Every key has moved past the other database's transaction, which is still running.
        assert all(position[0] >= change_xid > other_xid for position in positions(reader.cursor).values())
        other.rollback()

    with _session_on(connection.settings_dict["NAME"], "proofs-this-db") as here:
        here.execute("SELECT pg_current_xact_id()")
        held = str(uuid.uuid4())
        assert author.push_one(create(held))["status"] == "applied"
        assert reader.pull_all() == []  # held back while a writer of this database runs
        here.rollback()
    assert [c["id"] for c in pull_caught_up(reader)] == [held]


@pytest.mark.slow
def test_stress_concurrent_writers_and_a_pulling_reader(tworld):
    """Writers push creates (and updates of their own records) in transactions held open
    for random short times, some rolled back; a reader pulls continuously with small,
    random page sizes. Afterwards the reader has seen every committed record at its last
    version, nothing rolled back, and we count the duplicates (at least once is allowed)."""
    from fieldsync.sync.models import Device
    from fieldsync.sync.pull import pull_changes
    from fieldsync.sync.push import push_apply
    from warden_app.models import Observation, User

    seed = random.randrange(2**32)
    print(f"stress seed {seed}")
    writers = [("warden", tworld.enrol("warden").device_id), ("warden2", tworld.enrol("warden2").device_id),
               ("pcso", tworld.enrol("pcso").device_id), ("warden", tworld.enrol("warden").device_id)]
    reader_device = tworld.enrol("supervisor").device_id
    transactions_each = 12
    committed: set[str] = set()
    rolled_back: set[str] = set()
    lock = threading.Lock()
    writers_done = threading.Event()
    errors: list[BaseException] = []

    # Writes made and not yet committed, and the pulls that ran wholly inside one of them:
    # the overlap the test is about, counted.
    open_writes: set[tuple[int, int]] = set()
    generation = itertools.count()
    overlapped_pulls = [0]

    class Abort(Exception):
        pass

    def writer(index: int, username: str, device_id: str) -> None:
        rng = random.Random(seed + index)
        try:
            user = User.objects.get(username=username)
            device = Device.objects.get(pk=device_id)
            mine: dict[str, int] = {}  # committed record -> version
            for _ in range(transactions_each):
                new = [str(uuid.uuid4()) for _ in range(rng.randint(1, 3))]
                mutations = [create(rid) for rid in new]
                edited = None
                if mine and rng.random() < 0.4:
                    edited = rng.choice(sorted(mine))
                    mutations.append(mutation("observation", "update", edited,
                                              {"description": f"edit {uuid.uuid4().hex[:6]}"},
                                              base_version=mine[edited]))
                abort = rng.random() < 0.15
                try:
                    with transaction.atomic():
                        time.sleep(rng.random() * 0.01)
                        results = push_apply(user=user, device=device, mutations=mutations)
                        held = (index, next(generation))  # written, not committed
                        with lock:
                            open_writes.add(held)
                        time.sleep(rng.random() * 0.03)  # hold the transaction open
                        with lock:
                            open_writes.discard(held)
                        if abort:
                            raise Abort
                except Abort:
                    with lock:
                        rolled_back.update(new)
                    continue
                assert all(r["status"] == "applied" for r in results), results
                for rid in new:
                    mine[rid] = 1
                if edited:
                    mine[edited] = results[-1]["version"]
                with lock:
                    committed.update(new)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    seen: Counter = Counter()  # (id, version) deliveries
    ids_seen: Counter = Counter()
    last_version: dict[str, int] = {}
    pulls = [0]

    def reader() -> None:
        rng = random.Random(seed - 1)
        try:
            user = User.objects.get(username="supervisor")
            device = Device.objects.get(pk=reader_device)
            token = None

            def pull_once() -> bool:
                nonlocal token
                with lock:
                    open_before = set(open_writes)
                page = pull_changes(user=user, device=device, cursor_token=token, limit=rng.randint(2, 7))
                pulls[0] += 1
                with lock:
                    overlapped_pulls[0] += bool(open_before & open_writes)
                for change in page["changes"]:
                    assert change["op"] == "upsert", change
                    seen[(change["id"], change["version"])] += 1
                    ids_seen[change["id"]] += 1
                    last_version[change["id"]] = max(last_version.get(change["id"], 0), change["version"])
                token = page["cursor"]
                return page["has_more"]

            while not writers_done.is_set():
                pull_once()
                time.sleep(rng.random() * 0.005)
            # Writers have stopped and committed: pull to the end, and again until the
            # horizon has passed every change (another session may hold it back a moment).
            for _ in range(200):
                while pull_once():
                    pass
                if caught_up(token):
                    break
                time.sleep(0.02)
            else:
                raise AssertionError("the pull horizon never passed the feed")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(i, u, d), daemon=True) for i, (u, d) in enumerate(writers)]
    reading = threading.Thread(target=reader, daemon=True)
    reading.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    writers_done.set()
    reading.join(60)
    assert not errors, errors
    assert not reading.is_alive() and not any(t.is_alive() for t in threads)

    assert committed, "no transaction committed"
    assert overlapped_pulls[0] > 0, "no pull ran while a writer held uncommitted changes"
    missing = committed - set(ids_seen)
    assert not missing, f"seed {seed}: {len(missing)} committed records never pulled"
    assert not (rolled_back & set(ids_seen)), "a rolled-back record was pulled"
    versions = dict(Observation.objects.filter(pk__in=committed).values_list("pk", "version"))
    stale = {rid for rid in committed if last_version[rid] != versions[uuid.UUID(rid)]}
    assert not stale, f"seed {seed}: last version not delivered for {stale}"
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    print(f"{len(committed)} records, {len(rolled_back)} rolled back, {pulls[0]} pulls "
          f"({overlapped_pulls[0]} inside an uncommitted write), "
          f"{sum(seen.values())} deliveries, {duplicates} duplicate deliveries of the same version")


def test_a_pull_reads_in_one_repeatable_read_transaction_and_leaves_the_level_as_it_was(tworld):
    """The horizon and the reads after it must share one snapshot (a later snapshot could
    show a change the horizon did not hold back); the level is asked for in the BEGIN, and
    the connection's next transactions are READ COMMITTED again."""
    reader = tworld.enrol("warden")
    reader.push_one(create(str(uuid.uuid4())))
    seen: list[tuple[str, object]] = []

    def level(cursor, text, _params, _options):
        if "sync_change" in text or "pg_snapshot_xmin" in text or "pg_current_snapshot" in text:
            # now() is the transaction's start: the same for every statement of one.
            cursor.execute("SELECT current_setting('transaction_isolation'), now()")
            seen.append(cursor.fetchone())

    with pytest.MonkeyPatch.context() as mp:
        real = db.cursor
        mp.setattr(db, "cursor", lambda: Watched(real(), level))
        assert reader.pull_all()
    assert seen and {isolation for isolation, _ in seen} == {"repeatable read"}
    assert len({started for _, started in seen}) == 1  # one transaction (the page)
    with connection.cursor() as c:
        c.execute("SELECT current_setting('transaction_isolation')")
        assert c.fetchone()[0] == "read committed"
