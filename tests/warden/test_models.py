"""The domain model's guarantees, held by PostgreSQL itself: constraints and area assignment."""
import uuid
from datetime import timedelta

import pytest
from django.contrib.gis.geos import MultiPolygon, Point, Polygon
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from warden_app.models import (
    AccessLogEntry,
    Area,
    AuditItem,
    BoundarySet,
    FormDefinition,
    Observation,
    Organisation,
    Review,
    StreetAudit,
    User,
)

# Two operational areas sharing the edge lon = -2.525, and an analysis area over both.
WEST = (-2.541, 53.492, -2.525, 53.503)
EAST = (-2.525, 53.492, -2.509, 53.503)


@pytest.fixture
def base(db):
    org = Organisation.objects.create(name="Test Council", slug="tc", kind="council")
    user = User.objects.create_user(username="w", password="x-very-long-pw", organisation=org)
    ops = BoundarySet.objects.create(name="Ops", slug="ops", operational=True)
    lsoa = BoundarySet.objects.create(name="LSOA", slug="lsoa", operational=False)
    # Created east first, so east has the lower id: the shared edge must go to east.
    east = Area.objects.create(boundary_set=ops, name="East", code="E", geom=MultiPolygon(Polygon.from_bbox(EAST)))
    west = Area.objects.create(boundary_set=ops, name="West", code="W", geom=MultiPolygon(Polygon.from_bbox(WEST)))
    Area.objects.create(boundary_set=lsoa, name="LSOA 1", code="L1",
                        geom=MultiPolygon(Polygon.from_bbox((-2.6, 53.4, -2.4, 53.6))))
    obs_form = FormDefinition.objects.create(record_type="observation", version=1, title="ASB")
    audit_form = FormDefinition.objects.create(record_type="street_audit", version=1, title="EVA")
    return {"org": org, "user": user, "east": east, "west": west, "obs_form": obs_form, "audit_form": audit_form}


def observation(base, lon, lat, **extra):
    now = timezone.now()
    values = {
        "id": uuid.uuid4(), "author": base["user"], "organisation": base["org"], "form": base["obs_form"],
        "created_at": now, "updated_at": now, "location": Point(lon, lat, srid=4326),
        "qualifier": "nuisance", "incident_type": "noise", "observed_at": now,
    }
    values.update(extra)
    obs = Observation.objects.create(**values)
    obs.refresh_from_db()
    return obs


def test_area_inside_is_that_area(base):
    assert observation(base, -2.530, 53.497).area_id == base["west"].pk
    assert observation(base, -2.515, 53.497).area_id == base["east"].pk


def test_area_on_shared_edge_is_the_lowest_id(base):
    assert base["east"].pk < base["west"].pk
    assert observation(base, -2.525, 53.497).area_id == base["east"].pk


def test_outside_every_area_is_stored_with_no_area(base):
    obs = observation(base, -2.0, 53.0)
    assert obs.area_id is None
    assert Observation.objects.filter(pk=obs.pk).exists()


def test_analysis_boundaries_never_become_a_records_area(base):
    # Inside the LSOA but outside both operational areas.
    assert observation(base, -2.45, 53.45).area_id is None


def test_moving_a_record_recomputes_its_area(base):
    obs = observation(base, -2.530, 53.497)
    Observation.objects.filter(pk=obs.pk).update(location=Point(-2.515, 53.497, srid=4326))
    obs.refresh_from_db()
    assert obs.area_id == base["east"].pk


def test_area_keeps_a_metric_copy_in_british_national_grid(base):
    area = Area.objects.get(pk=base["east"].pk)
    assert area.geom_bng.srid == 27700
    # ~1.06 km x 1.22 km box: the area in square metres, not degrees.
    assert 1.0e6 < area.geom_bng.area < 1.5e6


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("qualifier", "criminal"),
        ("incident_type", "joyriding"),
        ("fix_source", "psychic"),
        ("accuracy_m", -1.0),
        ("review_state", "lost"),
        ("version", 0),
    ],
)
def test_observation_check_constraints(base, field, value):
    with pytest.raises(IntegrityError), transaction.atomic():
        observation(base, -2.515, 53.497, **{field: value})


def _audit(base, **extra):
    now = timezone.now()
    values = {"id": uuid.uuid4(), "author": base["user"], "organisation": base["org"], "form": base["audit_form"],
              "created_at": now, "updated_at": now, "location": Point(-2.515, 53.497, srid=4326), "started_at": now}
    values.update(extra)
    return StreetAudit.objects.create(**values)


def test_street_audit_cannot_finish_before_it_starts(base):
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():
        _audit(base, started_at=now, finished_at=now - timedelta(minutes=1))


@pytest.mark.parametrize(
    ("issue_type", "grade", "ok"),
    [("litter", "B", True), ("litter", None, False), ("graffiti", "E", False),
     ("fly_tipping", None, True), ("street_light_out", None, True)],
)
def test_audit_item_grades(base, issue_type, grade, ok):
    audit = _audit(base)
    now = timezone.now()

    def make():
        AuditItem.objects.create(id=uuid.uuid4(), author=base["user"], organisation=base["org"],
                                 form=base["audit_form"], created_at=now, updated_at=now,
                                 location=Point(-2.515, 53.497, srid=4326), street_audit=audit,
                                 issue_type=issue_type, grade=grade)

    if ok:
        make()
    else:
        with pytest.raises(IntegrityError), transaction.atomic():
            make()


def test_review_names_exactly_one_record_and_returns_carry_a_note(base):
    obs = observation(base, -2.515, 53.497)
    audit = _audit(base)
    with pytest.raises(IntegrityError), transaction.atomic():
        Review.objects.create(observation=obs, street_audit=audit, record_version=1, decision="approved",
                              reviewer=base["user"])
    with pytest.raises(IntegrityError), transaction.atomic():
        Review.objects.create(observation=obs, record_version=1, decision="has_issues", note="", reviewer=base["user"])
    Review.objects.create(observation=obs, record_version=1, decision="has_issues", note="Add a time",
                          reviewer=base["user"])


def test_form_versions_are_unique_per_record_type(base):
    with pytest.raises(IntegrityError), transaction.atomic():
        FormDefinition.objects.create(record_type="observation", version=1, title="again")


def test_area_codes_are_unique_within_a_boundary_set(base):
    with pytest.raises(IntegrityError), transaction.atomic():
        Area.objects.create(boundary_set=base["east"].boundary_set, name="Dup", code="E",
                            geom=MultiPolygon(Polygon.from_bbox(EAST)))


def test_access_log_is_append_only(base):
    entry = AccessLogEntry.objects.create(action="consultation", record_type="observation", record_ids=[uuid.uuid4()])
    for statement in ("UPDATE warden_app_accesslogentry SET purpose = 'x' WHERE id = %s",
                      "DELETE FROM warden_app_accesslogentry WHERE id = %s"):
        with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [entry.pk])
    assert AccessLogEntry.objects.filter(pk=entry.pk, purpose="").exists()


def test_spatial_and_sync_indexes_exist(base):
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename IN "
                       "('warden_app_observation', 'warden_app_area', 'sync_change')")
        defs = " ".join(row[0] for row in cursor.fetchall())
    assert "USING gist (location)" in defs
    assert "USING gist (geom)" in defs
    assert "(scope_key, xid, seq)" in defs
