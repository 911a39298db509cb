"""records_server_update, the engine's one bulk server-side update (fieldsync.sync.api): each
record a new version with its feed rows, only the columns named written."""
import uuid

import pytest
from django.db import transaction

from fieldsync.sync.api import records_server_update
from fieldsync.sync.models import Change, RecordVersion
from warden_app.models import Observation

from .conftest import IN_LEIGH, mutation, observation_data


def _records(world, count=2):
    author = world.enrol("warden")
    ids = [uuid.uuid4() for _ in range(count)]
    for record_id in ids:
        result = author.push_one(mutation("observation", "create", record_id, observation_data(at=IN_LEIGH)))
        assert result["status"] == "applied"
    return ids


def test_each_record_is_a_new_version_with_the_columns_given_and_its_feed_rows(world):
    ids = _records(world)
    wigan = world.areas["wigan"]
    before = {o.pk: o.updated_at for o in Observation.objects.filter(pk__in=ids)}
    with transaction.atomic():
        written = records_server_update(type_name="observation", updates={i: {"area_id": wigan.pk} for i in ids},
                                        changed=["area"], user=world.users["supervisor"],
                                        also_notify=["a:gone"])
    assert sorted(row["id"] for row in written) == sorted(ids)
    for obs in Observation.objects.filter(pk__in=ids):
        # The point is in Leigh: the area given is kept, so the placement trigger did not
        # fire (the location is not written) and place the row a second time.
        assert obs.version == 2 and obs.area_id == wigan.pk and obs.updated_at > before[obs.pk]
        version = RecordVersion.objects.get(record_id=obs.pk, version=2)
        assert version.changed_fields == ["area"] and version.user == world.users["supervisor"]
        assert version.device_id is None and version.data["location"]
        keys = set(Change.objects.filter(record_id=obs.pk).values_list("scope_key", flat=True))
        assert {f"a:{world.areas['leigh'].pk}", f"a:{wigan.pk}", "a:gone"} <= keys


def test_without_content_edit_updated_at_is_kept(world):
    [record_id] = _records(world, 1)
    before = Observation.objects.get(pk=record_id).updated_at
    with transaction.atomic():
        records_server_update(type_name="observation", updates={record_id: {}}, changed=["area"], user=None,
                              content_edit=False)
    obs = Observation.objects.get(pk=record_id)
    assert obs.version == 2 and obs.updated_at == before


def test_records_gone_are_skipped(world):
    with transaction.atomic():
        assert records_server_update(type_name="observation", updates={uuid.uuid4(): {}}, changed=[],
                                     user=None) == []


def test_only_server_columns(world):
    # Content goes through record_server_update, which cleans it; here only the server's own.
    [record_id] = _records(world, 1)
    with transaction.atomic(), pytest.raises(ValueError, match="description"):
        records_server_update(type_name="observation", updates={record_id: {"description": "x"}},
                              changed=["description"], user=None)
    assert Observation.objects.get(pk=record_id).version == 1
