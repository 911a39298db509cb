"""`seed_demo --records N`: fictional records to look at, through the project's own paths,
spread over months and both areas, some reviewed, deterministic and added once."""
from __future__ import annotations

import time
from io import StringIO

import pytest
from django.core.management import call_command

from fieldsync.sync.models import Change, Device, RecordVersion
from warden_app.choices import GRADED_ISSUE_TYPES
from warden_app.models import Area, AuditItem, Observation, Review, StreetAudit
from warden_app.services.demo_records import DEVICE_LABEL, record_id

pytestmark = pytest.mark.django_db

N = 80


def seed(records: int = N) -> str:
    out = StringIO()
    call_command("seed_demo", "--records", str(records), stdout=out, stderr=StringIO())
    return out.getvalue()


def state() -> dict:
    return {"observations": Observation.objects.count(), "audits": StreetAudit.objects.count(),
            "items": AuditItem.objects.count(), "reviews": Review.objects.count(),
            "versions": RecordVersion.objects.count(), "changes": Change.objects.count(),
            "devices": Device.objects.count()}


def test_records_are_added_once_spread_out_and_partly_reviewed():
    started = time.monotonic()
    out = seed()
    took = time.monotonic() - started
    assert "Records:" in out
    observations, audits = Observation.objects.all(), StreetAudit.objects.all()
    assert observations.count() + audits.count() == N
    assert 0.5 * N < observations.count() < 0.9 * N and audits.count() > 0.1 * N
    items = AuditItem.objects.all()
    assert items.count() >= 3 * audits.count()
    assert all(i.grade for i in items if i.issue_type in GRADED_ISSUE_TYPES)
    assert not any(i.grade for i in items if i.issue_type not in GRADED_ISSUE_TYPES)

    # Over the last months, in both areas, by the field staff, placed in the area they lie in.
    months = {o.observed_at.strftime("%Y-%m") for o in observations} | {a.started_at.strftime("%Y-%m") for a in audits}
    assert len(months) >= 5, months
    areas = {a.code: a for a in Area.objects.filter(code__in=("LEIGH-TC", "WIGAN-TC"))}
    for record in [*observations, *audits, *items]:
        assert record.area_id is not None, record.pk
        assert areas[record.area.code].geom.contains(record.location), record.pk
        assert record.author.username in ("warden_leigh", "pcso_leigh", "warden_wigan")
    by_area = {code: observations.filter(area=a).count() + audits.filter(area=a).count() for code, a in areas.items()}
    assert min(by_area.values()) > 0.2 * N, by_area

    # Some reviewed (Leigh's supervisor), approved and returned with issues both.
    states = [r.review_state for r in [*observations, *audits]]
    reviewed = [s for s in states if s != "submitted"]
    assert 0.15 * N < len(reviewed) < 0.7 * N, len(reviewed)
    assert {"approved", "has_issues"} <= set(reviewed)
    assert Review.objects.filter(reviewer__username="supervisor_leigh").count() == len(reviewed)
    assert 0 < observations.exclude(persons_involved=[]).count() < 0.3 * observations.count()

    # Through the sync engine: each record has its versions and change-feed rows, from a
    # demo handheld of its author.
    some = observations.first()
    assert RecordVersion.objects.filter(record_type="observation", record_id=some.pk).exists()
    assert Change.objects.filter(record_type="observation", record_id=some.pk).exists()
    assert some.device.label == DEVICE_LABEL and some.device.user_id == some.author_id

    # Again: nothing new, nothing changed.
    before = state()
    assert "0 new" in seed()
    assert state() == before
    # Deterministic: the same ids every time (so a re-run finds them).
    assert Observation.objects.filter(pk=record_id("observation", 0)).exists() or \
        StreetAudit.objects.filter(pk=record_id("street_audit", 0)).exists()
    assert took < 120, took


def test_more_records_later_adds_only_the_rest():
    seed(20)
    first = set(Observation.objects.values_list("pk", flat=True))
    seed(40)
    assert Observation.objects.count() + StreetAudit.objects.count() == 40
    assert first <= set(Observation.objects.values_list("pk", flat=True))


def test_no_records_is_the_bare_partnership():
    seed(0)
    assert Observation.objects.count() == StreetAudit.objects.count() == 0


def test_the_default_is_a_few_hundred():
    from warden_app.management.commands.seed_demo import Command

    parser = Command().create_parser("manage.py", "seed_demo")
    assert parser.parse_args([]).records == 300
