"""Every status a push answers, for every op, with its reason (sync protocol section 4).

Each test drives real handhelds over the HTTP API against PostgreSQL/PostGIS and Redis and
then reads the tables: records, versions, receipts, conflicts and quarantine.
"""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from fieldsync.sync.merge import distance_m

from .conftest import (
    IN_LEIGH,
    IN_WIGAN,
    audit_data,
    item_data,
    mutation,
    now_iso,
    observation_data,
    point,
)
from .pushkit import (
    assert_not_stored,
    assert_rejected,
    conflicts_of,
    counts,
    model_of,
    quarantined,
    receipts,
    status_of,
    versions,
)

# Offsets of about 3 m, 4 m, 40 m and 50 m at Leigh's latitude.
NORTH_3M = 0.000027
NORTH_40M = 0.00036
NORTH_50M = 0.00045
EAST_50M = 0.000756
EAST_4M = 0.00006
FAR = (-2.521, 53.494)  # about 400 m from IN_LEIGH


def moved(lonlat, dlon=0.0, dlat=0.0):
    return (lonlat[0] + dlon, lonlat[1] + dlat)


@pytest.fixture
def supervisor(world):
    return world.enrol("supervisor")


def create(handheld, type_, record_id, data) -> dict:
    result = handheld.push_one(mutation(type_, "create", record_id, data))
    assert result["status"] == "applied", result
    return result


def new_observation(handheld, at=IN_LEIGH, **extra) -> uuid.UUID:
    record_id = uuid.uuid4()
    create(handheld, "observation", record_id, observation_data(at, **extra))
    return record_id


def new_record(handheld, type_) -> uuid.UUID:
    """A fresh record of `type_` (an audit item gets its own audit first)."""
    if type_ == "observation":
        return new_observation(handheld)
    audit = uuid.uuid4()
    create(handheld, "street_audit", audit, audit_data())
    if type_ == "street_audit":
        return audit
    item = uuid.uuid4()
    create(handheld, "audit_item", item, item_data(audit))
    return item


def row(type_, record_id):
    return model_of(type_).objects.get(pk=record_id)


def set_review_state(type_, record_id, state: str) -> None:
    """A review decision, written as the review desk writes it (not through a push)."""
    assert model_of(type_).objects.filter(pk=record_id).update(review_state=state) == 1


def update(handheld, type_, record_id, base, **data) -> tuple[dict, dict]:
    m = mutation(type_, "update", record_id, data, base_version=base)
    return m, handheld.push_one(m)


# A field each type lets a handheld change, with two values to set.
EDITABLE = {"observation": "description", "street_audit": "notes", "audit_item": "responsible_agency"}


# --- applied ---------------------------------------------------------------------------------

@pytest.mark.parametrize("type_", ["observation", "street_audit", "audit_item"])
def test_create_applied_stores_server_owned_fields(world, warden, type_):
    record_id = uuid.uuid4()
    if type_ == "observation":
        m = mutation("observation", "create", record_id, observation_data())
    elif type_ == "street_audit":
        m = mutation("street_audit", "create", record_id, audit_data())
    else:
        audit = new_record(warden, "street_audit")
        m = mutation("audit_item", "create", record_id, item_data(audit))
    result = warden.push_one(m)
    assert result == {"mutation_id": m["mutation_id"], "id": str(record_id), "status": "applied", "version": 1}
    stored = row(type_, record_id)
    assert stored.version == 1
    assert stored.author_id == world.users["warden"].pk
    assert stored.organisation_id == world.orgs["council"].pk
    assert stored.area_id == world.areas["leigh"].pk
    assert str(stored.device_id) == warden.device_id
    assert stored.deleted_at is None
    assert (stored.location.x, stored.location.y) == tuple(m["data"]["location"]["coordinates"])
    [version] = versions(type_, record_id)
    assert version.version == 1
    assert str(version.mutation_id) == m["mutation_id"]
    assert set(version.changed_fields) >= {"location", "accuracy_m", "fix_source"}
    assert version.data["location"] == m["data"]["location"]
    [receipt] = receipts(m["mutation_id"])
    assert receipt.status == "applied" and receipt.result == result


@pytest.mark.parametrize("type_", ["observation", "street_audit", "audit_item"])
def test_update_applied_changes_only_the_patch(world, warden, type_):
    record_id = new_record(warden, type_)
    before = row(type_, record_id)
    m, result = update(warden, type_, record_id, 1, **{EDITABLE[type_]: "Council notified"})
    assert result == {"mutation_id": m["mutation_id"], "id": str(record_id), "status": "applied", "version": 2}
    after = row(type_, record_id)
    assert getattr(after, EDITABLE[type_]) == "Council notified"
    assert after.version == 2
    assert after.location == before.location and after.created_at == before.created_at
    for name in ("persons_involved", "action_taken", "photos", "observed_at", "qualifier", "issue_type",
                 "grade", "started_at", "title", "accuracy_m", "fix_source", "form_id", "area_id", "author_id"):
        if hasattr(before, name) and name != EDITABLE[type_]:
            assert getattr(after, name) == getattr(before, name), f"{name} changed by a patch that did not name it"
    assert after.updated_at > before.updated_at
    v1, v2 = versions(type_, record_id)
    assert v2.version == 2 and v2.changed_fields == [EDITABLE[type_]]
    assert v2.data[EDITABLE[type_]] == "Council notified"
    assert v1.data[EDITABLE[type_]] != "Council notified", "version 1 keeps the data it was made with"


@pytest.mark.parametrize("type_", ["observation", "street_audit", "audit_item"])
def test_delete_applied_keeps_a_tombstone(world, warden, type_):
    record_id = new_record(warden, type_)
    m = mutation(type_, "delete", record_id, base_version=1)
    result = warden.push_one(m)
    assert result == {"mutation_id": m["mutation_id"], "id": str(record_id), "status": "applied", "version": 2}
    stored = row(type_, record_id)
    assert stored.deleted_at is not None and stored.version == 2
    assert versions(type_, record_id)[-1].changed_fields == ["_deleted"]


def test_create_and_edits_in_one_push_keep_one_version_each_with_its_own_data(world, warden):
    record_id = uuid.uuid4()
    second_at = moved(IN_LEIGH, dlat=NORTH_50M)
    results = warden.push([
        mutation("observation", "create", record_id, observation_data(description="first")),
        mutation("observation", "update", record_id, {"description": "second", "location": point(second_at)},
                 base_version=1),
        mutation("observation", "update", record_id, {"qualifier": "personal"}, base_version=2),
    ])["results"]
    assert [(r["status"], r["version"]) for r in results] == [("applied", 1), ("applied", 2), ("applied", 3)]
    v1, v2, v3 = versions("observation", record_id)
    assert (v1.data["description"], v1.data["location"]) == ("first", point(IN_LEIGH))
    assert (v2.data["description"], v2.data["location"]) == ("second", point(second_at))
    assert v2.changed_fields == ["description", "location"]
    assert (v3.data["qualifier"], v3.changed_fields) == ("personal", ["qualifier"])
    assert v2.data["qualifier"] == "nuisance"
    assert row("observation", record_id).version == 3


def test_update_with_nothing_changed_is_applied_without_a_new_version(world, warden):
    record_id = new_observation(warden, description="same")
    before = row("observation", record_id)
    m, result = update(warden, "observation", record_id, 1, description="same")
    assert result == {"mutation_id": m["mutation_id"], "id": str(record_id), "status": "applied", "version": 1}
    assert len(versions("observation", record_id)) == 1
    after = row("observation", record_id)
    assert (after.version, after.updated_at) == (1, before.updated_at)
    [receipt] = receipts(m["mutation_id"])
    assert receipt.result == result, "the no-op is still answered once and remembered"


# --- merged ----------------------------------------------------------------------------------

def test_update_on_stale_base_with_disjoint_fields_is_merged(world, warden, supervisor):
    record_id = new_observation(warden)
    _, first = update(supervisor, "observation", record_id, 1, description="Seen by supervisor")
    assert first["status"] == "applied" and first["version"] == 2
    m, result = update(warden, "observation", record_id, 1, qualifier="personal")
    assert result == {"mutation_id": m["mutation_id"], "id": str(record_id), "status": "merged", "version": 3}
    stored = row("observation", record_id)
    assert stored.description == "Seen by supervisor"
    assert stored.qualifier == "personal"
    assert versions("observation", record_id)[-1].changed_fields == ["qualifier"]
    assert conflicts_of(record_id) == []


def test_delete_on_stale_base_without_server_changes_is_merged(world, warden):
    """The device edited offline, then deleted, both from base 1: its own edit is not a
    server change."""
    record_id = new_observation(warden)
    _, edited = update(warden, "observation", record_id, 1, description="first thoughts")
    assert edited["status"] == "applied" and edited["version"] == 2
    m = mutation("observation", "delete", record_id, base_version=1)
    result = warden.push_one(m)
    assert result == {"mutation_id": m["mutation_id"], "id": str(record_id), "status": "merged", "version": 3}
    assert row("observation", record_id).deleted_at is not None
    assert conflicts_of(record_id) == []


def test_delete_of_a_deleted_record_is_merged(world, warden, supervisor):
    record_id = new_observation(warden)
    assert supervisor.push_one(mutation("observation", "delete", record_id, base_version=1))["status"] == "applied"
    result = warden.push_one(mutation("observation", "delete", record_id, base_version=1))
    assert result["status"] == "merged" and result["version"] == 2
    assert len(versions("observation", record_id)) == 2


# --- conflict --------------------------------------------------------------------------------

def test_overlapping_field_is_a_conflict_and_the_rest_applies(world, warden, supervisor):
    record_id = new_observation(warden, description="original")
    update(supervisor, "observation", record_id, 1, description="supervisor's words")
    m, result = update(warden, "observation", record_id, 1, description="warden's words", qualifier="personal")
    assert result["status"] == "conflict"
    assert result["reason"] == "fields"
    assert result["version"] == 3
    stored = row("observation", record_id)
    assert stored.description == "supervisor's words", "the server value is kept"
    assert stored.qualifier == "personal", "fields without overlap are applied"
    assert stored.version == 3
    # The answer carries the current server record, as a pull upsert would.
    record = result["record"]
    assert record["id"] == str(record_id) and record["version"] == 3 and record["type"] == "observation"
    assert record["data"]["description"] == "supervisor's words"
    assert record["data"]["qualifier"] == "personal"
    assert record["area"] == world.areas["leigh"].pk
    assert record["author"] == "warden", "the same server fields as a pull upsert"
    assert record["review"]["state"] == "submitted"
    [conflict] = conflicts_of(record_id)
    assert str(conflict.pk) == result["conflict_id"]
    assert conflict.reason == "fields"
    assert conflict.fields == {"description": {"device": "warden's words", "server": "supervisor's words"}}
    assert (conflict.base_version, conflict.server_version) == (1, 3)
    assert str(conflict.mutation_id) == m["mutation_id"]
    assert str(conflict.device_id) == warden.device_id
    assert conflict.resolved_at is None
    listed = status_of(warden)["conflicts"]
    assert [c["conflict_id"] for c in listed] == [result["conflict_id"]]
    assert listed[0]["reason"] == "fields" and listed[0]["fields"] == conflict.fields
    assert quarantined(m["mutation_id"]) == []


def test_review_locked_record_keeps_the_whole_edit_as_conflict(world, warden):
    record_id = new_observation(warden, description="original")
    set_review_state("observation", record_id, "approved")
    before = counts()
    _, result = update(warden, "observation", record_id, 1, description="changed", qualifier="personal")
    assert result["status"] == "conflict"
    assert result["reason"] == "review_locked"
    assert result["version"] == 1
    assert result["record"]["data"]["description"] == "original"
    assert result["record"]["review"]["state"] == "approved"
    stored = row("observation", record_id)
    assert (stored.description, stored.qualifier, stored.version) == ("original", "nuisance", 1), "nothing applied"
    assert len(versions("observation", record_id)) == 1
    [conflict] = conflicts_of(record_id)
    assert conflict.reason == "review_locked"
    assert conflict.fields == {
        "description": {"device": "changed", "server": "original"},
        "qualifier": {"device": "personal", "server": "nuisance"},
    }
    after = counts()
    assert after["sync_conflict"] == before["sync_conflict"] + 1
    assert after["sync_recordversion"] == before["sync_recordversion"]
    assert [c["reason"] for c in status_of(warden)["conflicts"]] == ["review_locked"]


def test_delete_of_an_approved_record_is_a_review_locked_conflict(world, warden):
    record_id = new_observation(warden)
    set_review_state("observation", record_id, "approved")
    result = warden.push_one(mutation("observation", "delete", record_id, base_version=1))
    assert result["status"] == "conflict"
    assert result["reason"] == "review_locked"
    assert result["version"] == 1 and result["record"]["review"]["state"] == "approved"
    stored = row("observation", record_id)
    assert stored.deleted_at is None and stored.version == 1
    assert len(versions("observation", record_id)) == 1
    [conflict] = conflicts_of(record_id)
    assert conflict.reason == "review_locked"
    assert str(conflict.pk) == result["conflict_id"]
    assert conflict.fields == {"_deleted": {"device": True, "server": False}}


def test_audit_item_of_an_approved_audit_is_review_locked(world, warden):
    audit = uuid.uuid4()
    create(warden, "street_audit", audit, audit_data())
    item = uuid.uuid4()
    create(warden, "audit_item", item, item_data(audit, grade="C"))
    set_review_state("street_audit", audit, "approved")
    _, result = update(warden, "audit_item", item, 1, grade="D")
    assert result["status"] == "conflict"
    assert result["reason"] == "review_locked"
    assert result["version"] == 1 and result["record"]["data"]["grade"] == "C"
    stored = row("audit_item", item)
    assert (stored.grade, stored.version) == ("C", 1)
    [conflict] = conflicts_of(item)
    assert conflict.reason == "review_locked"
    assert conflict.fields == {"grade": {"device": "D", "server": "C"}}


def test_editing_a_deleted_record_is_a_deleted_conflict(world, warden, supervisor):
    record_id = new_observation(warden, description="original")
    assert supervisor.push_one(mutation("observation", "delete", record_id, base_version=1))["status"] == "applied"
    _, result = update(warden, "observation", record_id, 1, description="still there?")
    assert result["status"] == "conflict"
    assert result["reason"] == "deleted"
    assert result["version"] == 2
    stored = row("observation", record_id)
    assert stored.description == "original" and stored.version == 2 and stored.deleted_at is not None
    [conflict] = conflicts_of(record_id)
    assert conflict.reason == "deleted" and str(conflict.pk) == result["conflict_id"]
    assert conflict.fields == {"description": {"device": "still there?", "server": "original"}}
    assert len(versions("observation", record_id)) == 2


def test_delete_on_stale_base_after_a_server_edit_is_a_conflict(world, warden, supervisor):
    record_id = new_observation(warden)
    update(supervisor, "observation", record_id, 1, description="supervisor was here")
    result = warden.push_one(mutation("observation", "delete", record_id, base_version=1))
    assert result["status"] == "conflict"
    assert result["reason"] == "fields"
    assert result["version"] == 2
    stored = row("observation", record_id)
    assert stored.deleted_at is None and stored.version == 2
    assert result["record"]["data"]["description"] == "supervisor was here"
    [conflict] = conflicts_of(record_id)
    assert conflict.reason == "fields" and str(conflict.pk) == result["conflict_id"]
    assert conflict.fields == {"_deleted": {"device": True, "server": False}}


# --- location merge ---------------------------------------------------------------------------

def test_both_sides_moving_beyond_tolerance_is_a_location_conflict(world, warden, supervisor):
    record_id = new_observation(warden, accuracy_m=6.5)
    server_at = moved(IN_LEIGH, dlon=EAST_50M)
    device_at = moved(IN_LEIGH, dlat=NORTH_50M)
    assert distance_m(IN_LEIGH, server_at) > 10 and distance_m(IN_LEIGH, device_at) > 10
    update(supervisor, "observation", record_id, 1, location=point(server_at), accuracy_m=5.0)
    _, result = update(warden, "observation", record_id, 1, location=point(device_at), accuracy_m=3.0)
    assert result["status"] == "conflict"
    assert result["reason"] == "location"
    assert result["version"] == 2 and result["record"]["data"]["location"] == point(server_at)
    stored = row("observation", record_id)
    assert (stored.location.x, stored.location.y) == server_at
    assert stored.accuracy_m == 5.0
    [conflict] = conflicts_of(record_id)
    assert conflict.reason == "location" and str(conflict.pk) == result["conflict_id"]
    assert conflict.fields["location"] == {"device": point(device_at), "server": point(server_at)}
    assert conflict.fields["accuracy_m"] == {"device": 3.0, "server": 5.0}


# Both sides re-fix the point from base 1 (the supervisor first, as server version 2); the
# contract's "within it the fix with the better accuracy is kept" reads as: a move within
# the tolerance is not a real move, so it never overrides a real one. Each case: the server's
# fix and accuracy, the device's, whether each moved beyond 10 m, whose fix stays, the version.
LOCATION_MERGES = [
    pytest.param(moved(IN_LEIGH, dlat=NORTH_3M), 2.0, moved(IN_LEIGH, dlon=EAST_4M), 8.0, (False, False),
                 "server", 2, id="within-tolerance-server-fix-more-accurate"),
    pytest.param(moved(IN_LEIGH, dlat=NORTH_3M), 15.0, moved(IN_LEIGH, dlon=EAST_4M), 3.0, (False, False),
                 "device", 3, id="within-tolerance-device-fix-more-accurate"),
    # The server only refined the fix; the device moved the point 40 m: the move is kept
    # whatever the accuracies.
    pytest.param(moved(IN_LEIGH, dlat=NORTH_3M), 2.0, moved(IN_LEIGH, dlat=NORTH_40M), 8.0, (False, True),
                 "device", 3, id="device-move-beats-server-refinement"),
    # Another handheld set only a better accuracy at the same point; this one, offline, moved
    # the point with that same accuracy (so its accuracy is no change at all).
    pytest.param(IN_LEIGH, 3.0, FAR, 3.0, (False, True), "device", 3, id="device-move-with-the-servers-accuracy"),
    pytest.param(moved(IN_LEIGH, dlat=NORTH_40M), 15.0, moved(IN_LEIGH, dlon=EAST_4M), 3.0, (True, False),
                 "server", 2, id="server-move-beats-device-refinement"),
]


@pytest.mark.parametrize(("server_at", "server_accuracy", "device_at", "device_accuracy", "moves", "kept", "version"),
                         LOCATION_MERGES)
def test_a_location_merge_keeps_one_fix_without_a_conflict(world, warden, supervisor, server_at, server_accuracy,
                                                           device_at, device_accuracy, moves, kept, version):
    assert (distance_m(IN_LEIGH, server_at) > 10, distance_m(IN_LEIGH, device_at) > 10) == moves
    record_id = new_observation(warden, accuracy_m=6.5)
    _, first = update(supervisor, "observation", record_id, 1, location=point(server_at), accuracy_m=server_accuracy)
    assert (first["status"], first["version"]) == ("applied", 2)
    _, result = update(warden, "observation", record_id, 1, location=point(device_at), accuracy_m=device_accuracy)
    assert (result["status"], result["version"]) == ("merged", version)
    kept_at, kept_accuracy = (server_at, server_accuracy) if kept == "server" else (device_at, device_accuracy)
    stored = row("observation", record_id)
    assert (stored.location.x, stored.location.y) == kept_at and stored.accuracy_m == kept_accuracy
    assert stored.version == version
    history = versions("observation", record_id)
    assert [v.version for v in history] == list(range(1, version + 1))
    assert history[-1].data["location"] == point(kept_at)
    assert conflicts_of(record_id) == []


# --- own lineage -------------------------------------------------------------------------------

def test_offline_edits_from_one_base_in_one_push_do_not_conflict(world, warden):
    record_id = new_observation(warden)
    first = mutation("observation", "update", record_id, {"description": "draft"}, base_version=1)
    second = mutation("observation", "update", record_id, {"description": "final"}, base_version=1)
    results = warden.push([first, second])["results"]
    assert [r["status"] for r in results] == ["applied", "merged"]
    assert [r["version"] for r in results] == [2, 3]
    assert row("observation", record_id).description == "final"
    assert conflicts_of(record_id) == []


def test_offline_edits_from_one_base_in_two_pushes_do_not_conflict(world, warden):
    record_id = new_observation(warden)
    _, first = update(warden, "observation", record_id, 1, description="draft", qualifier="personal")
    assert first["status"] == "applied"
    _, second = update(warden, "observation", record_id, 1, description="final", qualifier="environmental")
    assert second["status"] == "merged" and second["version"] == 3
    stored = row("observation", record_id)
    assert (stored.description, stored.qualifier) == ("final", "environmental")
    assert conflicts_of(record_id) == []


def test_own_lineage_still_sees_other_writers(world, warden, supervisor):
    """Skipping the device's own versions must not hide a supervisor's edit between them."""
    record_id = new_observation(warden)
    update(warden, "observation", record_id, 1, qualifier="personal")  # v2, own
    update(supervisor, "observation", record_id, 2, description="supervisor")  # v3, other
    _, result = update(warden, "observation", record_id, 1, description="warden")
    assert result["status"] == "conflict" and result["reason"] == "fields"
    assert row("observation", record_id).description == "supervisor"
    [conflict] = conflicts_of(record_id)
    assert conflict.fields == {"description": {"device": "warden", "server": "supervisor"}}


def test_another_device_of_the_same_user_is_not_own_lineage(world, warden):
    record_id = new_observation(warden)
    second_handheld = world.enrol("warden")
    update(second_handheld, "observation", record_id, 1, description="from the other handheld")
    _, result = update(warden, "observation", record_id, 1, description="from this handheld")
    assert result["status"] == "conflict" and result["reason"] == "fields"
    assert row("observation", record_id).description == "from the other handheld"
    [conflict] = conflicts_of(record_id)
    assert str(conflict.device_id) == warden.device_id
    assert conflict.fields == {"description": {"device": "from this handheld", "server": "from the other handheld"}}


# --- review ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("state", ["has_issues", "rejected"])
def test_editing_a_record_sent_back_by_review_marks_it_edited(world, warden, state):
    record_id = new_observation(warden)
    set_review_state("observation", record_id, state)
    _, result = update(warden, "observation", record_id, 1, description="fixed as asked")
    assert result["status"] == "applied" and result["version"] == 2
    stored = row("observation", record_id)
    assert (stored.review_state, stored.description) == ("edited", "fixed as asked")


def test_editing_a_submitted_record_leaves_it_submitted(world, warden):
    record_id = new_observation(warden)
    _, result = update(warden, "observation", record_id, 1, description="more detail")
    assert result["status"] == "applied" and result["version"] == 2
    stored = row("observation", record_id)
    assert (stored.review_state, stored.description) == ("submitted", "more detail")


# --- rejected: validation ----------------------------------------------------------------------

def _drop(key):
    def change(data):
        data.pop(key)
    return change


def _set(key, value):
    def change(data):
        data[key] = value
    return change


VALIDATION_CASES = [
    ("required", _drop("qualifier"), "qualifier"),
    ("required", _drop("location"), "location"),
    ("wrong_type", _set("qualifier", 5), "qualifier"),
    ("wrong_type", _set("accuracy_m", "6.5"), "accuracy_m"),
    ("wrong_type", _set("action_taken", "advice"), "action_taken"),
    ("not_in_choices", _set("incident_type", "murder"), "incident_type"),
    ("not_in_choices", _set("fix_source", "dowsing"), "fix_source"),
    ("not_in_choices", _set("action_taken", ["advice", "arrest"]), "action_taken"),
    ("out_of_range", _set("location", point((-200.0, 53.5))), "location"),
    ("out_of_range", _set("location", point((-2.5, 95.0))), "location"),
    ("invalid_geometry", _set("location", {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}), "location"),
    ("invalid_geometry", _set("location", {"type": "Point", "coordinates": [-2.5]}), "location"),
    ("invalid_geometry", _set("location", {"type": "Point", "coordinates": ["-2.5", "53.4"]}), "location"),
    ("future_time", _set("observed_at", now_iso(timedelta(days=1))), "observed_at"),
    ("read_only", _set("author", "someone_else"), "author"),
    ("read_only", _set("organisation", 1), "organisation"),
    ("read_only", _set("area", 1), "area"),
    ("read_only", _set("version", 7), "version"),
    ("unknown_field", _set("colour", "red"), "colour"),
]


@pytest.mark.parametrize(("field_code", "change", "field"), VALIDATION_CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in VALIDATION_CASES])
def test_invalid_create_is_rejected_per_field_and_quarantined(world, warden, field_code, change, field):
    data = observation_data()
    change(data)
    record_id = uuid.uuid4()
    m = mutation("observation", "create", record_id, data)
    result = warden.push_one(m)
    assert_rejected(warden, m, result, "validation_failed", field, field_code)
    assert_not_stored("observation", record_id)


@pytest.mark.parametrize(("field", "value", "field_code"), [
    ("version", 5, "read_only"),
    ("author", "warden2", "read_only"),
    ("area", 3, "read_only"),
    ("organisation", 2, "read_only"),
    ("qualifier", None, "null"),
    ("observed_at", "yesterday", "invalid_datetime"),
    ("location", {"type": "Point", "coordinates": [-2.5, -91]}, "out_of_range"),
    ("nickname", "x", "unknown_field"),
])
def test_invalid_update_is_rejected_and_nothing_applied(world, warden, field, value, field_code):
    record_id = new_observation(warden)
    m, result = update(warden, "observation", record_id, 1, description="would change", **{field: value})
    assert_rejected(warden, m, result, "validation_failed", field, field_code)
    stored = row("observation", record_id)
    assert stored.version == 1 and stored.description != "would change"
    assert len(versions("observation", record_id)) == 1


# --- rejected: permission ------------------------------------------------------------------------

def test_warden_may_not_edit_another_wardens_record(world, warden):
    other = world.enrol("warden2")
    record_id = new_observation(other, description="mine")
    m, result = update(warden, "observation", record_id, 1, description="not yours")
    assert_rejected(warden, m, result, "permission_denied")
    assert result["errors"], "a permission failure still says what was refused"
    assert row("observation", record_id).description == "mine"
    m = mutation("observation", "delete", record_id, base_version=1)
    assert_rejected(warden, m, warden.push_one(m), "permission_denied")
    assert row("observation", record_id).deleted_at is None


def test_warden_may_not_create_in_a_foreign_area(world, warden):
    record_id = uuid.uuid4()
    m = mutation("observation", "create", record_id, observation_data(IN_WIGAN))
    result = warden.push_one(m)
    assert_rejected(warden, m, result, "permission_denied", "location", "area_forbidden")
    assert_not_stored("observation", record_id)


def test_pcso_may_not_move_a_record_into_a_foreign_area(world):
    pcso = world.enrol("pcso")
    record_id = new_observation(pcso)
    assert row("observation", record_id).area_id == world.areas["leigh"].pk
    m, result = update(pcso, "observation", record_id, 1, location=point(IN_WIGAN))
    assert_rejected(pcso, m, result, "permission_denied", "location", "area_forbidden")
    stored = row("observation", record_id)
    assert stored.area_id == world.areas["leigh"].pk and stored.version == 1
    assert (stored.location.x, stored.location.y) == IN_LEIGH


# --- rejected: references and versions -------------------------------------------------------------

@pytest.mark.parametrize("op", ["update", "delete"])
def test_unknown_record_is_not_found(world, warden, op):
    record_id = uuid.uuid4()
    m = mutation("observation", op, record_id, {"description": "x"} if op == "update" else None, base_version=1)
    result = warden.push_one(m)
    assert_rejected(warden, m, result, "not_found", "id", "not_found")
    assert_not_stored("observation", record_id)


@pytest.mark.parametrize("op", ["update", "delete"])
def test_base_version_newer_than_the_server_is_rejected(world, warden, op):
    record_id = new_observation(warden)
    m = mutation("observation", op, record_id, {"description": "x"} if op == "update" else None, base_version=5)
    result = warden.push_one(m)
    assert_rejected(warden, m, result, "invalid_base_version", "base_version", "invalid_base_version")
    stored = row("observation", record_id)
    assert stored.version == 1 and stored.deleted_at is None


def test_create_of_an_id_another_user_holds_is_id_exists(world, warden):
    record_id = new_observation(warden)
    data = observation_data()
    other = world.enrol("warden2")
    m = mutation("observation", "create", record_id, data)
    result = other.push_one(m)
    assert_rejected(other, m, result, "id_exists", "id", "id_exists")
    stored = row("observation", record_id)
    assert stored.author_id == world.users["warden"].pk and stored.version == 1


def test_create_of_an_existing_id_with_other_data_is_id_exists(world, warden):
    record_id = new_observation(warden, description="first")
    m = mutation("observation", "create", record_id, observation_data(description="second"))
    result = warden.push_one(m)
    assert_rejected(warden, m, result, "id_exists", "id", "id_exists")
    assert row("observation", record_id).description == "first"


def test_item_of_an_audit_rejected_in_the_same_push_depends_on_rejected(world, warden):
    audit, item = uuid.uuid4(), uuid.uuid4()
    bad_audit = audit_data()
    del bad_audit["started_at"]
    audit_m = mutation("street_audit", "create", audit, bad_audit)
    item_m = mutation("audit_item", "create", item, item_data(audit))
    obs = uuid.uuid4()
    results = warden.push([audit_m, item_m, mutation("observation", "create", obs, observation_data())])["results"]
    assert_rejected(warden, audit_m, results[0], "validation_failed", "started_at", "required")
    assert_rejected(warden, item_m, results[1], "depends_on_rejected", "street_audit", "depends_on_rejected")
    assert results[2]["status"] == "applied", "one bad mutation never blocks the others"
    assert_not_stored("street_audit", audit)
    assert_not_stored("audit_item", item)


def test_item_of_an_audit_rejected_in_an_earlier_push_depends_on_rejected(world, warden):
    audit = uuid.uuid4()
    bad_audit = audit_data(finished_at=now_iso(timedelta(hours=-2)))  # finishes before it starts
    audit_m = mutation("street_audit", "create", audit, bad_audit)
    assert_rejected(warden, audit_m, warden.push_one(audit_m), "validation_failed", "finished_at", "before_start")
    item = uuid.uuid4()
    item_m = mutation("audit_item", "create", item, item_data(audit))
    assert_rejected(warden, item_m, warden.push_one(item_m), "depends_on_rejected", "street_audit",
                    "depends_on_rejected")
    edit_m = mutation("street_audit", "update", audit, {"notes": "x"}, base_version=1)
    assert_rejected(warden, edit_m, warden.push_one(edit_m), "depends_on_rejected", "id", "depends_on_rejected")
    assert_not_stored("audit_item", item)


def test_item_of_an_audit_that_never_existed_is_rejected_not_found(world, warden):
    item = uuid.uuid4()
    m = mutation("audit_item", "create", item, item_data(uuid.uuid4()))
    assert_rejected(warden, m, warden.push_one(m), "validation_failed", "street_audit", "not_found")
    assert_not_stored("audit_item", item)


# --- duplicate --------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["create", "update", "delete"])
def test_resent_mutation_is_duplicate_with_the_original(world, warden, op):
    if op == "create":
        record_id = uuid.uuid4()
        m = mutation("observation", "create", record_id, observation_data())
    else:
        record_id = new_observation(warden)
        m = mutation("observation", op, record_id, {"description": "x"} if op == "update" else None,
                     base_version=1)
    original = warden.push_one(m)
    assert original["status"] == "applied"
    before = counts()
    again = warden.push_one(m)
    assert again["status"] == "duplicate"
    assert again["original"] == original
    assert again["id"] == str(record_id) and again["mutation_id"] == m["mutation_id"]
    assert counts() == before
    assert len(receipts(m["mutation_id"])) == 1


def test_resent_rejection_is_duplicate_and_quarantined_once(world, warden):
    data = observation_data()
    del data["qualifier"]
    m = mutation("observation", "create", uuid.uuid4(), data)
    first = warden.push_one(m)
    assert first["status"] == "rejected"
    again = warden.push_one(m)
    assert again["status"] == "duplicate" and again["original"] == first
    assert len(quarantined(m["mutation_id"])) == 1


def test_resent_conflict_is_duplicate_and_kept_once(world, warden, supervisor):
    record_id = new_observation(warden)
    update(supervisor, "observation", record_id, 1, description="supervisor")
    m, first = update(warden, "observation", record_id, 1, description="warden")
    assert first["status"] == "conflict" and first["reason"] == "fields"
    before = counts()
    again = warden.push_one(m)
    # The original outcome, without the record view: that was the record as it stood then,
    # shown under the sender's rights then; a pull gives it as it is now (and logs it).
    assert "record" in first and "record" not in again["original"]
    assert again["status"] == "duplicate" and again["original"] == {k: v for k, v in first.items() if k != "record"}
    assert counts() == before
    [conflict] = conflicts_of(record_id)
    assert str(conflict.pk) == first["conflict_id"]


# --- a refusal the decision could not foresee -----------------------------------------------

def test_a_database_refusal_rejects_only_that_mutation(world, warden):
    """A constraint the engine does not know of (added here with real DDL, rolled back with
    the test): the batch is replayed one mutation at a time, the refused one is rejected
    and quarantined, the others are stored, and a resend is all duplicates."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE warden_app_observation ADD CONSTRAINT test_refuses_this "
                       "CHECK (description <> 'refused by the database')")
    audit, item, first, refused, last = (uuid.uuid4() for _ in range(5))
    mutations = [
        mutation("observation", "create", first, observation_data()),
        mutation("street_audit", "create", audit, audit_data()),
        mutation("observation", "create", refused, observation_data(description="refused by the database")),
        mutation("audit_item", "create", item, item_data(audit)),
        mutation("observation", "create", last, observation_data()),
    ]
    results = warden.push(mutations)["results"]
    assert [r["status"] for r in results] == ["applied", "applied", "rejected", "applied", "applied"]
    assert_rejected(warden, mutations[2], results[2], "constraint_violation", "data", "constraint_violation")
    assert "test_refuses_this" in results[2]["errors"]["data"][0]["message"]
    assert_not_stored("observation", refused)
    for type_, record_id in (("observation", first), ("street_audit", audit), ("audit_item", item),
                             ("observation", last)):
        assert len(versions(type_, record_id)) == 1
    before = counts()
    again = warden.push(mutations)["results"]
    assert [r["status"] for r in again] == ["duplicate"] * 5
    assert [r["original"] for r in again] == results
    assert counts() == before
