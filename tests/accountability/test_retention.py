"""Retention: personal fields past their period are erased by the daily job from records
and every copy, one erasure row per batch naming the records and holding no values."""
from __future__ import annotations

import uuid
from datetime import timedelta

import orjson
from django.utils import timezone

from fieldsync.sync.models import Conflict, QuarantinedMutation, Receipt, RecordVersion
from tests.sync.conftest import mutation
from warden_app.accountability.selectors import retention_days
from warden_app.accountability.tasks import retention_erase_due
from warden_app.models import AccessLogEntry, Observation, RetentionPeriod
from warden_app.services.review import review_decide

from .conftest import JANE


def age(record_id: str, days: int) -> None:
    """Set a record back in time, as if it had been observed and stored `days` ago."""
    then = timezone.now() - timedelta(days=days)
    Observation.objects.filter(pk=record_id).update(observed_at=then, created_at=then, updated_at=then)


def copies_of(record_id: str) -> str:
    parts = [
        list(Observation.objects.filter(pk=record_id).values("description", "persons_involved", "photos")),
        list(RecordVersion.objects.filter(record_id=record_id).values_list("data", flat=True)),
        list(Conflict.objects.filter(record_id=record_id).values_list("fields", flat=True)),
        list(Receipt.objects.filter(record_id=record_id).values_list("result", flat=True)),
        list(QuarantinedMutation.objects.filter(record_id=record_id).values_list("payload", flat=True)),
    ]
    return orjson.dumps(parts, default=str).decode()


def erasures() -> list[AccessLogEntry]:
    return list(AccessLogEntry.objects.filter(action="erasure").order_by("id"))


def test_records_past_their_period_are_erased_everywhere(world, settings):
    settings.RETENTION_PERSONAL_DAYS = {"observation": 365}
    settings.RETENTION_BATCH = 2
    old = [world.observe(persons_involved=[JANE], description=f"Jane Doe incident {n}") for n in range(3)]
    recent = world.observe(persons_involved=[JANE], description="Jane Doe again")
    # Copies: a second version, and a quarantined mutation, of the first old record.
    assert world.edit("warden_leigh", old[0], 1, description="Jane Doe, red coat")["status"] == "applied"
    world.handheld("warden_leigh").push_one(
        mutation("observation", "update", old[0], {"qualifier": "bogus", "persons_involved": [JANE]}, base_version=2))
    assert QuarantinedMutation.objects.filter(record_id=old[0]).exists()
    for record_id in old:
        age(record_id, 400)
    age(recent, 300)
    review_decide(reviewer=world.users["supervisor_leigh"], record_type="observation",
                  record_id=uuid.UUID(old[1]), decision="rejected", note="not ASB")

    result = retention_erase_due()  # the Celery task, called as the worker would

    assert result["erased"] == {"observation": 3}
    for record_id in old:
        text = copies_of(record_id)
        assert "Jane" not in text and "red coat" not in text, record_id
    assert Observation.objects.get(pk=old[1]).review_state == "rejected"  # still out of analysis
    # Kept as it was: its old updated_at, so no handheld window takes the record back in.
    assert Observation.objects.get(pk=old[0]).updated_at < timezone.now() - timedelta(days=399)
    assert "Jane" in copies_of(recent)

    rows = erasures()
    assert len(rows) == 2  # two batches of at most 2
    assert sorted(str(i) for row in rows for i in row.record_ids) == sorted(old)
    for row in rows:
        assert row.actor is None and row.purpose == "retention: personal fields kept 365 days"
        assert row.details["via"] == "retention" and row.details["fields"] == [
            "description", "persons_involved", "photos"]
        assert "Jane" not in orjson.dumps(row.details).decode()
    assert sum(row.details["copies"]["quarantined"] for row in rows) == 1

    # Nothing is left to do: a second run writes nothing.
    assert retention_erase_due() == {"erased": {}, "swept": {}}
    assert len(erasures()) == 2


def test_an_admin_set_period_wins_over_the_setting(world, settings):
    settings.RETENTION_PERSONAL_DAYS = {"observation": 365}
    record = world.observe(persons_involved=[JANE])
    age(record, 40)
    assert retention_erase_due()["erased"] == {}
    RetentionPeriod.objects.create(record_type="observation", personal_days=30, note="schedule 4.2")
    assert retention_days("observation") == 30
    assert retention_erase_due()["erased"] == {"observation": 1}
    assert Observation.objects.get(pk=record).persons_involved == []
    assert erasures()[0].purpose == "retention: personal fields kept 30 days"


def test_copies_pushed_after_the_erasure_are_swept_next_time(world, settings):
    """A handheld offline during the erasure pushes its old edit afterwards: the server's
    version moved on, so the edit becomes a conflict holding the device's values."""
    settings.RETENTION_PERSONAL_DAYS = {"observation": 365}
    record = world.observe(persons_involved=[JANE])
    age(record, 400)
    retention_erase_due()
    late = world.edit("warden_leigh", record, 1, persons_involved=[{**JANE, "approx_age": 35}])
    assert late["status"] == "conflict"
    assert "Jane" in copies_of(record)

    result = retention_erase_due()

    assert result["swept"] == {"observation": 1} and "Jane" not in copies_of(record)
    sweep = erasures()[-1]
    assert sweep.details["via"] == "retention.late_copies" and [str(i) for i in sweep.record_ids] == [record]
    assert sweep.details["copies"]["conflicts"] == 1 and "Jane" not in orjson.dumps(sweep.details).decode()
    assert retention_erase_due() == {"erased": {}, "swept": {}}  # clean now: nothing more to log


def test_types_without_personal_fields_or_period_are_left_alone(world, settings):
    settings.RETENTION_PERSONAL_DAYS = {}
    record = world.observe(persons_involved=[JANE])
    age(record, 4000)
    assert retention_erase_due() == {"erased": {}, "swept": {}}
    assert Observation.objects.get(pk=record).persons_involved == [JANE]
