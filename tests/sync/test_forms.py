"""Versioned forms (sync protocol section 4): street audits and their items are validated
against the form version they name, so a handheld that was offline while a new version
was published keeps working, and a new version's codes work only under that version."""
from __future__ import annotations

import uuid

import pytest

from .conftest import audit_data, item_data, mutation, observation_data
from .pushkit import (
    assert_not_stored,
    assert_rejected,
    versions,
)

# Version 2 of the street audit form drops litter and adds needles (ungraded).
CHECKLIST_V2 = [
    {"code": "graffiti", "graded": True}, {"code": "detritus", "graded": True},
    {"code": "fly_posting", "graded": True}, {"code": "fly_tipping"}, {"code": "street_light_out"},
    {"code": "needles"}, {"code": "other"},
]


@pytest.fixture
def audit(warden):
    """An audit made with form version 1, pushed before version 2 exists (which also
    fills the server's cache of forms, as a running server would have)."""
    audit_id = uuid.uuid4()
    result = warden.push_one(mutation("street_audit", "create", audit_id, audit_data()))
    assert result["status"] == "applied"
    assert warden.get("/api/v1/sync/manifest").json()["record_types"]["street_audit"]["form_version"] == 1
    return audit_id


def publish_v2(world):
    """Publish version 2 as the admin does: a new row, nothing told to the sync engine."""
    from warden_app.models import FormDefinition

    return FormDefinition.objects.create(record_type="street_audit", version=2, title="EVA v2",
                                         definition={"checklist": CHECKLIST_V2})


def item(audit_id, form_version, issue_type, grade=None) -> tuple[uuid.UUID, dict]:
    record_id = uuid.uuid4()
    data = item_data(audit_id, form_version=form_version, issue_type=issue_type)
    data["grade"] = grade
    return record_id, mutation("audit_item", "create", record_id, data)


def test_items_are_validated_against_the_form_version_they_name(world, warden, audit):
    from warden_app.models import AuditItem

    v2 = publish_v2(world)
    litter_v1, m1 = item(audit, 1, "litter", "B")
    litter_v2, m2 = item(audit, 2, "litter", "B")
    needles_v2, m3 = item(audit, 2, "needles")
    needles_v1, m4 = item(audit, 1, "needles")
    results = warden.push([m1, m2, m3, m4])["results"]
    assert results[0]["status"] == "applied", "a handheld still on version 1 keeps working"
    assert_rejected(warden, m2, results[1], "validation_failed", "issue_type", "not_in_choices")
    assert results[2]["status"] == "applied", "the new code works under the new version"
    assert_rejected(warden, m4, results[3], "validation_failed", "issue_type", "not_in_choices")
    assert AuditItem.objects.get(pk=litter_v1).form_id == world.forms["street_audit"].pk
    stored = AuditItem.objects.get(pk=needles_v2)
    assert stored.form_id == v2.pk and stored.issue_type == "needles" and stored.grade is None
    assert_not_stored("audit_item", litter_v2)
    assert_not_stored("audit_item", needles_v1)
    assert versions("audit_item", needles_v2)[0].data["form_version"] == 2


def test_an_audit_names_its_form_version_too(world, warden, audit):
    from warden_app.models import StreetAudit

    v2 = publish_v2(world)
    audit_v2 = uuid.uuid4()
    result = warden.push_one(mutation("street_audit", "create", audit_v2, audit_data(form_version=2)))
    assert result["status"] == "applied"
    assert StreetAudit.objects.get(pk=audit_v2).form_id == v2.pk
    assert StreetAudit.objects.get(pk=audit).form_id == world.forms["street_audit"].pk


def test_the_manifest_offers_the_newest_form_once_published(world, warden, audit,
                                                           django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # the publishing transaction commits
        publish_v2(world)
    street_audit = warden.get("/api/v1/sync/manifest").json()["record_types"]["audit_item"]
    assert street_audit["form_version"] == 2
    codes = street_audit["schema"]["properties"]["issue_type"]["enum"]
    assert "needles" in codes and "litter" not in codes


def test_a_version_published_by_another_process_is_found_by_name(world, warden, audit):
    """bulk_create sends no signal: like a version published by another server process,
    this one has not cleared our cached forms."""
    from warden_app.models import FormDefinition

    _, early = item(audit, 2, "needles")  # asked for before it exists: remembered as missing
    assert_rejected(warden, early, warden.push_one(early), "validation_failed", "form_version",
                    "unknown_form_version")
    FormDefinition.objects.bulk_create([FormDefinition(record_type="street_audit", version=2, title="EVA v2",
                                                       definition={"checklist": CHECKLIST_V2})])
    _, m = item(audit, 2, "needles")
    assert warden.push_one(m)["status"] == "applied"
    _, m = item(audit, 1, "litter", "A")
    assert warden.push_one(m)["status"] == "applied"


def test_editing_an_item_keeps_its_form_version_unless_it_names_another(world, warden, audit):
    from warden_app.models import AuditItem

    v2 = publish_v2(world)
    record_id, m = item(audit, 1, "litter", "B")
    assert warden.push_one(m)["status"] == "applied"
    # A patch without form_version is checked against the item's own version (1).
    edit = mutation("audit_item", "update", record_id, {"grade": "D"}, base_version=1)
    assert warden.push_one(edit)["status"] == "applied"
    assert AuditItem.objects.get(pk=record_id).form_id == world.forms["street_audit"].pk
    bad = mutation("audit_item", "update", record_id, {"issue_type": "needles", "grade": None}, base_version=2)
    assert_rejected(warden, bad, warden.push_one(bad), "validation_failed", "issue_type", "not_in_choices")
    # Moving the item to version 2 validates it against version 2 and records the change.
    moved = mutation("audit_item", "update", record_id,
                     {"form_version": 2, "issue_type": "needles", "grade": None}, base_version=2)
    result = warden.push_one(moved)
    assert result["status"] == "applied" and result["version"] == 3
    stored = AuditItem.objects.get(pk=record_id)
    assert (stored.form_id, stored.issue_type, stored.grade) == (v2.pk, "needles", None)
    assert versions("audit_item", record_id)[-1].data["form_version"] == 2


@pytest.mark.parametrize(("issue_type", "grade", "field_code"), [
    ("litter", None, "required"),
    ("graffiti", None, "required"),
    ("fly_tipping", "C", "not_graded"),
    ("street_light_out", "A", "not_graded"),
])
def test_graded_types_need_a_grade_and_ungraded_refuse_one(world, warden, audit, issue_type, grade, field_code):
    record_id, m = item(audit, 1, issue_type, grade)
    assert_rejected(warden, m, warden.push_one(m), "validation_failed", "grade", field_code)
    assert_not_stored("audit_item", record_id)


@pytest.mark.parametrize(("issue_type", "grade"), [("litter", "A"), ("detritus", "D"), ("fly_tipping", None)])
def test_graded_and_ungraded_types_applied(world, warden, audit, issue_type, grade):
    from warden_app.models import AuditItem

    record_id, m = item(audit, 1, issue_type, grade)
    assert warden.push_one(m)["status"] == "applied"
    assert AuditItem.objects.get(pk=record_id).grade == grade


def test_a_grade_outside_a_to_d_is_not_in_choices(world, warden, audit):
    _, m = item(audit, 1, "litter", "E")
    assert_rejected(warden, m, warden.push_one(m), "validation_failed", "grade", "not_in_choices")


def test_an_edit_that_leaves_a_graded_item_without_grade_is_rejected(world, warden, audit):
    from warden_app.models import AuditItem

    record_id, m = item(audit, 1, "litter", "B")
    warden.push_one(m)
    edit = mutation("audit_item", "update", record_id, {"grade": None}, base_version=1)
    assert_rejected(warden, edit, warden.push_one(edit), "validation_failed", "grade", "required")
    assert AuditItem.objects.get(pk=record_id).grade == "B"


@pytest.mark.parametrize(("type_", "form_version", "field_code"), [
    ("street_audit", 99, "unknown_form_version"),
    ("audit_item", 99, "unknown_form_version"),
    ("audit_item", 2, "unknown_form_version"),  # not published (yet)
    ("observation", 5, "unknown_form_version"),
    ("audit_item", 0, "unknown_form_version"),
    ("audit_item", 2**40, "unknown_form_version"),
    ("audit_item", "1", "wrong_type"),
    ("audit_item", 1.5, "wrong_type"),
    ("audit_item", True, "wrong_type"),
])
def test_unknown_form_versions_are_rejected(world, warden, audit, type_, form_version, field_code):
    record_id = uuid.uuid4()
    if type_ == "street_audit":
        data = audit_data(form_version=form_version)
    elif type_ == "audit_item":
        data = item_data(audit, form_version=form_version)
    else:
        data = observation_data(form_version=form_version)
    m = mutation(type_, "create", record_id, data)
    assert_rejected(warden, m, warden.push_one(m), "validation_failed", "form_version", field_code)
    assert_not_stored(type_, record_id)


def test_a_missing_form_version_is_required_for_audits(world, warden, audit):
    record_id = uuid.uuid4()
    data = item_data(audit)
    del data["form_version"]
    m = mutation("audit_item", "create", record_id, data)
    assert_rejected(warden, m, warden.push_one(m), "validation_failed", "form_version", "required")
    assert_not_stored("audit_item", record_id)
    audit_id = uuid.uuid4()
    data = audit_data()
    del data["form_version"]
    m = mutation("street_audit", "create", audit_id, data)
    assert_rejected(warden, m, warden.push_one(m), "validation_failed", "form_version", "required")
    assert_not_stored("street_audit", audit_id)


def test_an_observation_without_form_version_takes_the_current_one(world, warden):
    from warden_app.models import Observation

    record_id = uuid.uuid4()
    data = observation_data()
    data.pop("form_version", None)
    assert warden.push_one(mutation("observation", "create", record_id, data))["status"] == "applied"
    assert Observation.objects.get(pk=record_id).form_id == world.forms["observation"].pk


def test_a_form_cannot_ungrade_the_national_four(world, warden, audit):
    """A form version that lists litter without `graded` still gets litter graded: the
    national grades apply whatever the form says (and the table insists)."""
    from warden_app.models import FormDefinition

    FormDefinition.objects.create(record_type="street_audit", version=2, title="EVA v2",
                                  definition={"checklist": [{"code": "litter"}, {"code": "needles"}]})
    record_id, m = item(audit, 2, "litter")
    assert_rejected(warden, m, warden.push_one(m), "validation_failed", "grade", "required")
    assert_not_stored("audit_item", record_id)
    record_id, m = item(audit, 2, "litter", "B")
    assert warden.push_one(m)["status"] == "applied"


def test_a_form_code_longer_than_the_column_is_refused_as_too_long(world, warden, audit):
    from warden_app.models import FormDefinition

    long_code = "abandoned_shopping_trolley_in_the_canal_towpath"
    assert len(long_code) > 40
    FormDefinition.objects.create(record_type="street_audit", version=2, title="EVA v2",
                                  definition={"checklist": [{"code": long_code}]})
    record_id, m = item(audit, 2, long_code)
    assert_rejected(warden, m, warden.push_one(m), "validation_failed", "issue_type", "too_long")
    assert_not_stored("audit_item", record_id)
