"""Review and conflict resolution as the handhelds see them: through pulls and pushes."""
import uuid

import pytest

from fieldsync.errors import ApiError
from fieldsync.sync.models import Conflict, RecordVersion
from warden_app.models import AccessLogEntry, Observation, Review
from warden_app.services.review import conflict_resolve, review_decide

from .conftest import mutation, observation_data


def _created(world, username="warden"):
    handheld = world.enrol(username)
    record_id = uuid.uuid4()
    assert handheld.push_one(mutation("observation", "create", record_id, observation_data()))["status"] == "applied"
    handheld.pull_all()
    return handheld, record_id


def test_return_with_issues_reaches_the_authors_handheld_and_an_edit_marks_it_edited(world):
    handheld, record_id = _created(world)
    review_decide(reviewer=world.users["supervisor"], record_type="observation", record_id=record_id,
                  decision="has_issues", note="Add what action you took")
    handheld.pull_all()
    change = handheld.store[("observation", str(record_id))]
    assert change["review"]["state"] == "has_issues"
    assert change["review"]["note"] == "Add what action you took"
    assert change["version"] == 2
    result = handheld.push_one(mutation("observation", "update", record_id, {"action_taken": ["contact_card"]},
                                        base_version=2))
    assert result["status"] == "applied"
    assert Observation.objects.get(pk=record_id).review_state == "edited"
    review_decide(reviewer=world.users["supervisor"], record_type="observation", record_id=record_id,
                  decision="approved")
    assert Observation.objects.get(pk=record_id).review_state == "approved"
    assert list(Review.objects.filter(observation_id=record_id).values_list("decision", flat=True)) == [
        "has_issues", "approved"]
    assert AccessLogEntry.objects.filter(action="alteration", record_ids__contains=[record_id]).count() >= 2


def test_approved_record_is_locked_and_takes_comments_only(world):
    handheld, record_id = _created(world)
    review_decide(reviewer=world.users["supervisor"], record_type="observation", record_id=record_id,
                  decision="approved")
    with pytest.raises(ApiError) as caught:
        review_decide(reviewer=world.users["supervisor"], record_type="observation", record_id=record_id,
                      decision="rejected", note="changed my mind")
    assert caught.value.code == "invalid_state"
    result = handheld.push_one(mutation("observation", "update", record_id, {"description": "later edit"},
                                        base_version=2))
    assert result["status"] == "conflict"
    assert Conflict.objects.get(pk=result["conflict_id"]).reason == "review_locked"
    assert Observation.objects.get(pk=record_id).description != "later edit"


@pytest.mark.parametrize("who", ["warden", "warden_wigan", "analyst"])
def test_only_a_supervisor_of_the_area_reviews_and_not_their_own(world, who):
    _, record_id = _created(world)
    with pytest.raises(ApiError) as caught:
        review_decide(reviewer=world.users[who], record_type="observation", record_id=record_id, decision="approved")
    assert caught.value.code == "permission_denied"
    assert Observation.objects.get(pk=record_id).review_state == "submitted"


def test_returning_without_a_note_is_refused(world):
    _, record_id = _created(world)
    with pytest.raises(ApiError):
        review_decide(reviewer=world.users["supervisor"], record_type="observation", record_id=record_id,
                      decision="has_issues", note=" ")


def test_supervisor_resolves_a_conflict_field_by_field_and_both_handhelds_converge(world):
    first, record_id = _created(world)
    second = world.enrol("warden")
    second.pull_all()
    assert first.push_one(mutation("observation", "update", record_id, {"description": "from first"},
                                   base_version=1))["status"] == "applied"
    result = second.push_one(mutation("observation", "update", record_id, {"description": "from second"},
                                      base_version=1))
    assert result["status"] == "conflict"
    conflict = Conflict.objects.get(pk=result["conflict_id"])
    assert conflict.fields["description"] == {"device": "from second", "server": "from first"}
    conflict_resolve(user=world.users["supervisor"], conflict_id=conflict.pk, choices={"description": "device"})
    conflict.refresh_from_db()
    assert conflict.resolved_at is not None
    first.pull_all()
    second.pull_all()
    key = ("observation", str(record_id))
    assert first.store[key]["data"]["description"] == second.store[key]["data"]["description"] == "from second"
    assert first.store[key]["version"] == second.store[key]["version"] == 3
    assert RecordVersion.objects.filter(record_id=record_id).count() == 3
    with pytest.raises(ApiError):
        conflict_resolve(user=world.users["supervisor"], conflict_id=conflict.pk, choices={"description": "server"})


def test_a_warden_cannot_resolve_conflicts(world):
    first, record_id = _created(world)
    second = world.enrol("warden")
    first.push_one(mutation("observation", "update", record_id, {"description": "a"}, base_version=1))
    result = second.push_one(mutation("observation", "update", record_id, {"description": "b"}, base_version=1))
    with pytest.raises(ApiError) as caught:
        conflict_resolve(user=world.users["warden"], conflict_id=result["conflict_id"],
                         choices={"description": "device"})
    assert caught.value.code == "permission_denied"
