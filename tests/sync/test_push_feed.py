"""The change feed a push writes. The feed rows of a batch's creates are written before the
creates are decided (Batch.apply), so these check that what ends in the feed is what the
decisions say, whatever was written ahead."""
from __future__ import annotations

import uuid

import pytest
from django.db import transaction

from fieldsync.sync.models import Change, Device
from fieldsync.sync.push import Batch, parse_mutation

from .conftest import IN_LEIGH, IN_WIGAN, OUTSIDE, mutation, observation_data, point
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


def test_a_record_created_and_moved_in_one_push_is_in_the_feed_of_its_last_place(world):
    # Touched twice, the record is not written ahead; moved outside every area, it is
    # kept under its author's own key ("t:"), and its Leigh row must not stay behind.
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
    device = Device.objects.get(pk=warden.device_id)
    raws = [mutation("observation", "create", uuid.uuid4(), observation_data(at=at))
            for at in (IN_LEIGH, IN_LEIGH, OUTSIDE)]
    with transaction.atomic():
        batch = Batch(user=user, device=device, mutations=[parse_mutation(i, m) for i, m in enumerate(raws)])
        batch.apply()
    assert [r["status"] for r in batch.results] == ["applied"] * 3
    written = {(c.record_type, c.record_id, c.scope_key)
               for c in Change.objects.filter(record_id__in=[uuid.UUID(m["id"]) for m in raws])}
    assert len(written) == 6
    assert batch.feed_ahead == written
