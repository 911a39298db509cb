"""Boundaries change: records are placed again and handhelds follow (evict / upsert)."""
import uuid

from django.contrib.gis.geos import MultiPolygon, Polygon

from fieldsync.sync.models import RecordVersion
from warden_app.models import Observation
from warden_app.services.placement import area_delete, records_replace
from warden_app.services.teams import team_set_areas

from .conftest import IN_LEIGH, WIGAN_BOX, mutation, observation_data


def _record_by_warden2(world):
    author = world.enrol("warden2")
    record_id = uuid.uuid4()
    result = author.push_one(mutation("observation", "create", record_id, observation_data(at=IN_LEIGH)))
    assert result["status"] == "applied"
    return record_id


def test_redrawn_area_moves_its_records_and_handhelds_follow(world):
    record_id = _record_by_warden2(world)
    reader = world.enrol("warden")  # follows Leigh
    reader.pull_all()
    assert ("observation", str(record_id)) in reader.store
    wigan_reader = world.enrol("warden_wigan")
    wigan_reader.pull_all()
    assert ("observation", str(record_id)) not in wigan_reader.store

    # Wigan is redrawn to cover the record; Leigh keeps it too but Wigan... make Leigh lose it.
    leigh, wigan = world.areas["leigh"], world.areas["wigan"]
    leigh.geom = MultiPolygon(Polygon.from_bbox((-2.5169, 53.492, -2.509, 53.503)), srid=4326)
    leigh.save()
    wigan.geom = MultiPolygon(Polygon.from_bbox(WIGAN_BOX), Polygon.from_bbox((-2.52, 53.495, -2.5168, 53.5)),
                              srid=4326)
    wigan.save()
    assert records_replace() == 1
    obs = Observation.objects.get(pk=record_id)
    assert obs.area_id == wigan.pk
    assert RecordVersion.objects.filter(record_id=record_id, version=2, changed_fields=["area"]).exists()

    changes = {c["id"]: c["op"] for c in reader.pull_all()}
    assert changes[str(record_id)] == "evict"
    changes = {c["id"]: c for c in wigan_reader.pull_all()}
    assert changes[str(record_id)]["op"] == "upsert"
    assert changes[str(record_id)]["area"] == wigan.pk
    assert records_replace() == 0  # nothing stale left


def test_deleting_an_area_evicts_its_records_from_its_followers(world):
    record_id = _record_by_warden2(world)
    reader = world.enrol("warden")
    reader.pull_all()
    team_set_areas(team=world.teams["leigh"], areas=[])  # grants go with the area anyway
    team_set_areas(team=world.teams["leigh"], areas=[world.areas["leigh"]])
    area_delete(area=world.areas["leigh"])
    assert Observation.objects.get(pk=record_id).area_id is None
    changes = {c["id"]: c["op"] for c in reader.pull_all()}
    assert changes[str(record_id)] == "evict"
    # The author still holds their own out-of-area record.
    author = world.enrol("warden2")
    author.pull_all()
    assert ("observation", str(record_id)) in author.store


def test_pushed_rows_keep_the_area_the_push_placed_and_later_writes_are_placed_by_the_database(world):
    """The push places its points itself and tells the area trigger so (one placement,
    not two); the flag must not outlive the push's own writes in the transaction."""
    from django.contrib.gis.geos import Point
    from django.db import connection

    from .conftest import IN_WIGAN

    record_id = _record_by_warden2(world)
    assert Observation.objects.get(pk=record_id).area_id == world.areas["leigh"].pk
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('fieldsync.engine_placed', true)")
        assert cursor.fetchone()[0] in (None, "", "off")
    # Same transaction (the test's), an ordinary write: the trigger places it again.
    Observation.objects.filter(pk=record_id).update(location=Point(*IN_WIGAN, srid=4326))
    assert Observation.objects.get(pk=record_id).area_id == world.areas["wigan"].pk
