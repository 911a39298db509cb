"""Exactly once (sync protocol principle 2): a device may resend anything any number of
times, from the same or a re-enrolled handheld, one after another or at the same moment,
and the store ends as if it had arrived once.

The concurrent tests use committed data (`tworld`) and a live server: two threads send
real HTTP requests, each served on its own thread with its own PostgreSQL connection.
"""
from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import pytest
from django.db import connection, transaction

from .conftest import audit_data, item_data, mutation, observation_data
from .pushkit import (
    counts,
    model_of,
    quarantined,
    receipts,
    status_of,
    versions,
)


def outbox() -> tuple[list[dict], dict]:
    """A handheld's outbox: an observation created then edited, an audit with an item."""
    obs, audit, item = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    mutations = [
        mutation("observation", "create", obs, observation_data(description="first")),
        mutation("observation", "update", obs, {"description": "second"}, base_version=1),
        mutation("street_audit", "create", audit, audit_data()),
        mutation("audit_item", "create", item, item_data(audit)),
    ]
    return mutations, {"observation": obs, "street_audit": audit, "audit_item": item}


def assert_stored_once(ids: dict, version_counts: dict) -> None:
    for type_name, record_id in ids.items():
        assert model_of(type_name).objects.filter(pk=record_id).count() == 1
        assert [v.version for v in versions(type_name, record_id)] == list(range(1, version_counts[type_name] + 1))


@pytest.mark.parametrize("times", [1, 2, 10])
def test_the_same_push_sent_n_times_is_stored_once(world, times):
    handheld = world.enrol("warden")
    mutations, ids = outbox()
    first = handheld.push(mutations)["results"]
    assert [r["status"] for r in first] == ["applied"] * 4
    after_first = counts()
    for _ in range(times - 1):
        again = handheld.push(mutations)["results"]
        assert [r["status"] for r in again] == ["duplicate"] * 4
        for sent, original, answer in zip(mutations, first, again, strict=True):
            assert answer["original"] == original
            assert answer["mutation_id"] == sent["mutation_id"] and answer["id"] == sent["id"]
            assert answer["version"] == original["version"]
        assert counts() == after_first, "a resend stores nothing"
    assert_stored_once(ids, {"observation": 2, "street_audit": 1, "audit_item": 1})
    for m in mutations:
        assert len(receipts(m["mutation_id"])) == 1
    assert model_of("observation").objects.get(pk=ids["observation"]).description == "second"


def test_a_resend_inside_one_push_is_a_duplicate(world):
    handheld = world.enrol("warden")
    record_id = uuid.uuid4()
    m = mutation("observation", "create", record_id, observation_data())
    results = handheld.push([m, m])["results"]
    assert [r["status"] for r in results] == ["applied", "duplicate"]
    assert results[1]["original"] == results[0]
    assert len(versions("observation", record_id)) == 1


@pytest.mark.parametrize("op", ["create", "update", "delete"])
def test_a_reused_mutation_id_with_another_payload_is_rejected_and_never_applied(world, op):
    handheld = world.enrol("warden")
    record_id = uuid.uuid4()
    target = uuid.uuid4()
    handheld.push_one(mutation("observation", "create", target, observation_data(description="target")))
    if op == "create":
        original = mutation("observation", "create", record_id, observation_data(description="original"))
        reused = mutation("observation", "create", uuid.uuid4(), observation_data(description="other"),
                          mutation_id=original["mutation_id"])
    elif op == "update":
        original = mutation("observation", "create", record_id, observation_data(description="original"))
        reused = mutation("observation", "update", target, {"description": "hijacked"}, base_version=1,
                          mutation_id=original["mutation_id"])
    else:
        original = mutation("observation", "create", record_id, observation_data(description="original"))
        reused = mutation("observation", "delete", target, base_version=1, mutation_id=original["mutation_id"])
    first = handheld.push_one(original)
    assert first["status"] == "applied"
    before = counts()
    result = handheld.push_one(reused)
    assert result["status"] == "rejected" and result["code"] == "mutation_id_reused"
    assert result["errors"]["mutation_id"][0]["code"] == "mutation_id_reused"
    [kept] = quarantined(original["mutation_id"])
    assert kept.code == "mutation_id_reused" and kept.payload == reused
    assert any(q["code"] == "mutation_id_reused" for q in status_of(handheld)["quarantined"])
    after = counts()
    assert after["sync_quarantinedmutation"] == before["sync_quarantinedmutation"] + 1
    for table in ("warden_app_observation", "sync_receipt", "sync_recordversion", "sync_change", "sync_conflict"):
        assert after[table] == before[table], f"{table} changed by a reused mutation id"
    stored = model_of("observation").objects.get(pk=target)
    assert (stored.description, stored.version, stored.deleted_at) == ("target", 1, None)
    [receipt] = receipts(original["mutation_id"])
    assert receipt.result == first, "the receipt still holds the first answer"
    # The original itself is still a plain duplicate afterwards.
    again = handheld.push_one(original)
    assert again["status"] == "duplicate" and again["original"] == first


def test_resending_a_reused_mutation_id_changes_nothing(world):
    """The rejection has no receipt of its own (the id's receipt is the original's), yet a
    resend must leave the store as it was: one quarantined copy, however often it comes."""
    handheld = world.enrol("warden")
    original = mutation("observation", "create", uuid.uuid4(), observation_data())
    handheld.push_one(original)
    reused = mutation("observation", "create", uuid.uuid4(), observation_data(description="other"),
                      mutation_id=original["mutation_id"])
    assert handheld.push_one(reused)["code"] == "mutation_id_reused"
    before = counts()
    for _ in range(3):
        results = handheld.push([reused, reused])["results"]
        assert [r["code"] for r in results] == ["mutation_id_reused"] * 2
    assert counts() == before
    assert len(quarantined(original["mutation_id"])) == 1
    other = mutation("observation", "create", uuid.uuid4(), observation_data(description="third"),
                     mutation_id=original["mutation_id"])
    assert handheld.push_one(other)["code"] == "mutation_id_reused"
    assert len(quarantined(original["mutation_id"])) == 2, "a different payload is kept too"


def test_resending_a_mutation_without_a_usable_id_changes_nothing(world):
    from fieldsync.sync.models import QuarantinedMutation

    handheld = world.enrol("warden")
    bad = mutation("observation", "create", uuid.uuid4(), observation_data())
    bad["mutation_id"] = "not-a-uuid"
    for _ in range(3):
        result = handheld.push_one(bad)
        assert result["status"] == "rejected" and result["code"] == "invalid_mutation"
    assert QuarantinedMutation.objects.filter(payload=bad).count() == 1


def test_a_reused_mutation_id_inside_one_push_is_rejected(world):
    handheld = world.enrol("warden")
    first_id, second_id = uuid.uuid4(), uuid.uuid4()
    first = mutation("observation", "create", first_id, observation_data())
    second = mutation("observation", "create", second_id, observation_data(), mutation_id=first["mutation_id"])
    results = handheld.push([first, second])["results"]
    assert [r["status"] for r in results] == ["applied", "rejected"]
    assert results[1]["code"] == "mutation_id_reused"
    assert not model_of("observation").objects.filter(pk=second_id).exists()


def test_a_re_enrolled_handheld_resending_its_outbox_gets_duplicates(world):
    old = world.enrol("warden")
    mutations, ids = outbox()
    first = old.push(mutations)["results"]
    before = counts()
    new = world.enrol("warden")  # wiped and enrolled again: a new device, the same person
    assert new.device_id != old.device_id
    again = new.push(mutations)["results"]
    assert [r["status"] for r in again] == ["duplicate"] * 4
    assert [r["original"] for r in again] == first
    assert counts() == before
    assert_stored_once(ids, {"observation": 2, "street_audit": 1, "audit_item": 1})


def test_a_re_enrolled_handheld_resending_a_create_under_a_new_mutation_id_gets_a_duplicate(world):
    old = world.enrol("warden")
    record_id = uuid.uuid4()
    data = observation_data()
    first = old.push_one(mutation("observation", "create", record_id, data))
    new = world.enrol("warden")
    before = counts()
    m = mutation("observation", "create", record_id, data)  # the app rebuilt its outbox
    result = new.push_one(m)
    assert result["status"] == "duplicate"
    assert result["original"]["status"] == "applied" and result["original"]["version"] == first["version"]
    after = counts()
    assert after["warden_app_observation"] == before["warden_app_observation"]
    assert after["sync_recordversion"] == before["sync_recordversion"]
    assert len(versions("observation", record_id)) == 1
    # and that answer is itself remembered: sending it once more is still a duplicate
    assert new.push_one(m)["status"] == "duplicate"


# --- at the same moment ------------------------------------------------------------------------

def _post_together(url: str, requests: list[tuple[str, list[dict]]], hold=None) -> list[httpx.Response]:
    """Send each (token, mutations) push from its own thread, released together by a
    barrier. `hold`, if given, runs in the caller once all threads are released and
    before they are joined (to keep a lock while both requests are in flight)."""
    barrier = threading.Barrier(len(requests) + (1 if hold else 0))
    responses: list[httpx.Response | BaseException | None] = [None] * len(requests)

    def send(index: int, token: str, mutations: list[dict]) -> None:
        try:
            with httpx.Client(timeout=60) as client:
                body = json.dumps({"mutations": mutations})
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                barrier.wait()
                responses[index] = client.post(f"{url}/api/v1/sync/push", content=body, headers=headers)
        except BaseException as exc:
            responses[index] = exc

    threads = [threading.Thread(target=send, args=(i, token, ms)) for i, (token, ms) in enumerate(requests)]
    for thread in threads:
        thread.start()
    if hold:
        barrier.wait()
        hold(threads)
    for thread in threads:
        thread.join(90)
    for response in responses:
        assert isinstance(response, httpx.Response), response
        assert response.status_code == 200, response.text
    return responses


def _waiting_backends() -> int:
    with connection.cursor() as cursor:
        # The statistics views are snapshotted per transaction: take a fresh look each time.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


class Hold:
    """Keeps the devices' rows locked until both pushes wait on a lock (a push ends by
    stamping its device's last push), so both requests are in flight inside their
    transactions at the same time; then lets them go. `overlapped` says it happened."""

    def __init__(self, *device_ids: str):
        self.device_ids = list(device_ids)
        self.overlapped = False

    def __call__(self, threads=()) -> None:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM sync_device WHERE id = ANY(%s::uuid[]) FOR UPDATE", [self.device_ids])
            deadline = time.monotonic() + 20
            while not self.overlapped and time.monotonic() < deadline:
                self.overlapped = _waiting_backends() >= 2
                time.sleep(0.02)


class Watch:
    """Holds nothing: looks, while the requests run, for one of them waiting on a lock the
    other holds (its push lock, or the key of a row the other has written), which shows
    both were inside their transactions at once. `overlapped` says it was seen."""

    def __init__(self):
        self.overlapped = False

    def __call__(self, threads=()) -> None:
        import psycopg

        from tests.deploy.stack import child_database_url

        with psycopg.connect(child_database_url("proofs-watch"), autocommit=True) as conn:
            while not self.overlapped and any(thread.is_alive() for thread in threads):
                self.overlapped = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND application_name <> 'proofs-watch'").fetchone()[0] > 0


def _until_overlapped(rounds: int = 30, least: int = 3):
    """Rounds of a barrier test: at least `least`, then until a Watch has seen an overlap
    (a round without one still checks the outcome, of requests that merely came close)."""
    seen = 0
    for n in range(rounds):
        watch = Watch()
        yield watch
        seen += watch.overlapped
        if seen and n + 1 >= least:
            print(f"overlap seen in {seen} of {n + 1} rounds")
            return
    raise AssertionError(f"in {rounds} rounds the two requests were never seen inside their transactions at once")


def _statuses(responses) -> list[list[str]]:
    return [[r["status"] for r in response.json()["results"]] for response in responses]


@pytest.mark.parametrize("held", [False, True], ids=["barrier", "held-until-both-wait"])
def test_the_same_push_twice_at_the_same_moment_is_stored_once(tworld, live_server, held):
    handheld = tworld.enrol("warden")
    for watch in (_until_overlapped() if not held else [None]):
        record_id = uuid.uuid4()
        m = mutation("observation", "create", record_id, observation_data())
        before = counts()
        hold = Hold(handheld.device_id) if held else watch
        responses = _post_together(live_server.url, [(handheld.token, [m]), (handheld.token, [m])], hold=hold)
        if held:
            assert hold.overlapped, "both pushes should have been inside their transactions at once"
        statuses = sorted(s[0] for s in _statuses(responses))
        assert statuses == ["applied", "duplicate"], statuses
        results = [response.json()["results"][0] for response in responses]
        applied = next(r for r in results if r["status"] == "applied")
        duplicate = next(r for r in results if r["status"] == "duplicate")
        assert duplicate["original"] == applied
        after = counts()
        assert after["warden_app_observation"] == before["warden_app_observation"] + 1
        assert after["sync_receipt"] == before["sync_receipt"] + 1
        assert after["sync_recordversion"] == before["sync_recordversion"] + 1
        assert after["sync_quarantinedmutation"] == before["sync_quarantinedmutation"]
        assert len(receipts(m["mutation_id"])) == 1
        assert len(versions("observation", record_id)) == 1


@pytest.mark.parametrize("op", ["update", "delete"])
def test_the_same_edit_twice_at_the_same_moment_is_applied_once(tworld, live_server, op):
    handheld = tworld.enrol("warden")
    record_id = uuid.uuid4()
    assert handheld.push_one(mutation("observation", "create", record_id, observation_data()))["status"] == "applied"
    m = mutation("observation", op, record_id, {"description": "once"} if op == "update" else None, base_version=1)
    before = counts()
    hold = Hold(handheld.device_id)
    responses = _post_together(live_server.url, [(handheld.token, [m]), (handheld.token, [m])], hold=hold)
    assert hold.overlapped
    assert sorted(s[0] for s in _statuses(responses)) == ["applied", "duplicate"]
    assert [v.version for v in versions("observation", record_id)] == [1, 2]
    after = counts()
    assert after["sync_receipt"] == before["sync_receipt"] + 1
    assert after["sync_conflict"] == before["sync_conflict"]
    assert model_of("observation").objects.get(pk=record_id).version == 2


def test_an_outbox_sent_from_two_handhelds_of_one_user_at_once_is_stored_once(tworld, live_server):
    first, second = tworld.enrol("warden"), tworld.enrol("warden")
    mutations, ids = outbox()
    # Both in flight at once, proven: one holds the user's push lock and waits on its device's
    # row (held), the other waits on the push lock.
    hold = Hold(first.device_id, second.device_id)
    responses = _post_together(live_server.url, [(first.token, mutations), (second.token, mutations)], hold=hold)
    assert hold.overlapped, "both pushes should have been in flight at once"
    statuses = sorted(tuple(s) for s in _statuses(responses))
    assert statuses == [("applied",) * 4, ("duplicate",) * 4], statuses
    assert_stored_once(ids, {"observation": 2, "street_audit": 1, "audit_item": 1})
    for m in mutations:
        assert len(receipts(m["mutation_id"])) == 1


@pytest.mark.parametrize("held", [False, True], ids=["barrier", "held-until-both-wait"])
def test_two_users_creating_one_id_at_once_store_one_record(tworld, live_server, held):
    warden, warden2 = tworld.enrol("warden"), tworld.enrol("warden2")
    for watch in (_until_overlapped() if not held else [None]):
        _one_id_created_twice_at_once(live_server, warden, warden2, Hold(warden.device_id, warden2.device_id)
                                      if held else watch)


def _one_id_created_twice_at_once(live_server, warden, warden2, hold) -> None:
    record_id = uuid.uuid4()
    data = observation_data()
    mine = mutation("observation", "create", record_id, data)
    theirs = mutation("observation", "create", record_id, data)

    responses = _post_together(live_server.url, [(warden.token, [mine]), (warden2.token, [theirs])], hold=hold)
    if isinstance(hold, Hold):
        assert hold.overlapped, "both creates should have been inside their transactions at once"
    results = [response.json()["results"][0] for response in responses]
    assert sorted(r["status"] for r in results) == ["applied", "rejected"], results
    rejected = next(r for r in results if r["status"] == "rejected")
    assert rejected["code"] == "id_exists"
    assert model_of("observation").objects.filter(pk=record_id).count() == 1
    assert len(versions("observation", record_id)) == 1
    winner = model_of("observation").objects.get(pk=record_id).author.username
    loser_m = theirs if winner == "warden" else mine
    assert [q.code for q in quarantined(loser_m["mutation_id"])] == ["id_exists"]
