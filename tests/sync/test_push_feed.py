"""The change feed a push writes. The feed rows of a batch's creates are written before the
creates are decided (Batch.apply), so these check that what ends in the feed is what the
decisions say, whatever was written ahead."""
from __future__ import annotations

import uuid

import psycopg
import pytest
from django.db import IntegrityError, transaction

from fieldsync.sync.models import Change, Device
from fieldsync.sync.push import Batch, parse_mutation

from .conftest import IN_LEIGH, IN_WIGAN, OUTSIDE, audit_data, item_data, mutation, observation_data, point
from .pushkit import assert_not_stored

pytestmark = pytest.mark.django_db


def feed_keys(record_id) -> set[str]:
    return set(Change.objects.filter(record_type="observation", record_id=record_id)
               .values_list("scope_key", flat=True))


def test_a_mixed_batch_leaves_feed_rows_for_the_applied_creates_only(world, warden):
    user, leigh = world.users["warden"], world.areas["leigh"]
    good, other_good = uuid.uuid4(), uuid.uuid4()
    invalid, forbidden = uuid.uuid4(), uuid.uuid4()
    results = warden.push([
        mutation("observation", "create", good, observation_data()),
        mutation("observation", "create", invalid, observation_data(qualifier="not-a-qualifier")),
        mutation("observation", "create", forbidden, observation_data(at=IN_WIGAN)),
        mutation("observation", "create", other_good, observation_data()),
    ])["results"]
    assert [r["status"] for r in results] == ["applied", "rejected", "rejected", "applied"]
    assert [r.get("code") for r in results[1:3]] == ["validation_failed", "permission_denied"]
    for record_id in (good, other_good):
        assert feed_keys(record_id) == {f"u:{user.pk}", f"a:{leigh.pk}"}
    for record_id in (invalid, forbidden):
        assert_not_stored("observation", record_id)
    # The handheld's next pull lists the two records, once each.
    pulled = [c["id"] for c in warden.pull_all()]
    assert sorted(pulled) == sorted([str(good), str(other_good)])


def decided(world, handheld, raws) -> Batch:
    device = Device.objects.get(pk=handheld.device_id)
    with transaction.atomic():
        batch = Batch(user=world.users["warden"], device=device,
                      mutations=[parse_mutation(i, m) for i, m in enumerate(raws)])
        batch.apply()
    return batch


def test_a_record_created_and_moved_in_one_push_is_in_the_feed_of_its_last_place(world):
    # Moved outside every area, it is kept under its author's own key ("t:"), and its
    # Leigh row must not stay behind (test_nothing_is_written_ahead_… checks that a record
    # touched twice is not written ahead at all).
    warden = world.enrol("warden")
    user = world.users["warden"]
    record_id = uuid.uuid4()
    results = warden.push([
        mutation("observation", "create", record_id, observation_data()),
        mutation("observation", "update", record_id, {"location": point(OUTSIDE)}, base_version=1),
    ])["results"]
    assert [r["status"] for r in results] == ["applied", "applied"], results
    assert feed_keys(record_id) == {f"u:{user.pk}", f"t:{user.pk}"}


def test_the_feed_written_ahead_is_the_feed_the_decisions_keep(world, warden):
    # The common case, a batch of good creates, needs no correction after deciding: the
    # rows written ahead are exactly the rows the records have.
    user = world.users["warden"]
    raws = [mutation("observation", "create", uuid.uuid4(), observation_data(at=at))
            for at in (IN_LEIGH, IN_LEIGH, OUTSIDE)]
    batch = decided(world, warden, raws)
    assert [r["status"] for r in batch.results] == ["applied"] * 3
    written = {(c.record_type, c.record_id, c.scope_key)
               for c in Change.objects.filter(record_id__in=[uuid.UUID(m["id"]) for m in raws])}
    assert len(written) == 6
    assert batch.feed_ahead == written
    assert {key for _, _, key in written} == {f"u:{user.pk}", f"a:{world.areas['leigh'].pk}", f"t:{user.pk}"}


def test_nothing_is_written_ahead_when_a_record_is_touched_twice(world, warden):
    # Its place after the batch is not known before deciding; rows written ahead and then
    # corrected would come after the rest of the feed and upset its order.
    record_id = uuid.uuid4()
    batch = decided(world, warden, [
        mutation("observation", "create", uuid.uuid4(), observation_data()),
        mutation("observation", "create", record_id, observation_data()),
        mutation("observation", "update", record_id, {"description": "moved on"}, base_version=1),
    ])
    assert [r["status"] for r in batch.results] == ["applied"] * 3
    assert batch.feed_ahead == set()
    assert feed_keys(record_id) == {f"u:{world.users['warden'].pk}", f"a:{world.areas['leigh'].pk}"}


def test_an_audit_written_ahead_with_its_items_comes_before_them_in_the_feed(world, warden):
    audit_id = uuid.uuid4()
    item_ids = [uuid.uuid4() for _ in range(3)]
    results = warden.push([mutation("street_audit", "create", audit_id, audit_data())]
                          + [mutation("audit_item", "create", i, item_data(audit_id)) for i in item_ids])["results"]
    assert [r["status"] for r in results] == ["applied"] * 4, results
    audit_seqs = list(Change.objects.filter(record_id=audit_id).values_list("seq", flat=True))
    item_seqs = list(Change.objects.filter(record_id__in=item_ids).values_list("seq", flat=True))
    assert len(audit_seqs) == 2 and len(item_seqs) == 6
    assert max(audit_seqs) < min(item_seqs)
    pulled = [c["type"] for c in warden.pull_all()]
    assert pulled == ["street_audit"] + ["audit_item"] * 3


def wrapped_in_django(cause: Exception) -> IntegrityError:
    """A database error as one of Django's queries raises it: Django's class, psycopg's cause."""
    error = IntegrityError(str(cause))
    error.__cause__ = cause
    return error


def test_a_racing_create_that_surfaces_in_a_django_query_is_retried_not_refused(world, warden, monkeypatch):
    # In pipeline mode the unique violation of a row written ahead comes up at whichever
    # statement reads next; in one of Django's queries it arrives wrapped in Django's
    # IntegrityError. Deciding again is the answer, not the one-by-one replay of refusals.
    from fieldsync.sync import push

    real, attempts = push._push_batch, []

    def racing_once(user, device, parsed):
        attempts.append(len(parsed))
        if len(attempts) == 1:
            raise wrapped_in_django(psycopg.errors.UniqueViolation("duplicate key"))
        return real(user, device, parsed)

    monkeypatch.setattr(push, "_push_batch", racing_once)
    monkeypatch.setattr(push, "_push_one_by_one", lambda *args: pytest.fail("replayed one by one"))
    record_id = uuid.uuid4()
    assert warden.push_one(mutation("observation", "create", record_id, observation_data()))["status"] == "applied"
    assert attempts == [1, 1]
    assert feed_keys(record_id) == {f"u:{world.users['warden'].pk}", f"a:{world.areas['leigh'].pk}"}


def test_a_refusal_that_surfaces_in_a_django_query_is_replayed_one_by_one(world, warden, monkeypatch):
    from fieldsync.sync import push

    attempts, replays = [], []
    real_replay = push._push_one_by_one

    def refused(user, device, parsed):
        attempts.append(len(parsed))
        raise wrapped_in_django(psycopg.errors.CheckViolation("check"))

    def replay(user, device, parsed):
        replays.append(len(parsed))
        return real_replay(user, device, parsed)

    monkeypatch.setattr(push, "_push_batch", refused)
    monkeypatch.setattr(push, "_push_one_by_one", replay)
    assert warden.push_one(mutation("observation", "create", uuid.uuid4(), observation_data()))["status"] == "applied"
    assert attempts == [1] and replays == [1], "a refusal is not retried as a whole"
