"""The supervisor's review desk (/review/) through the Django test client: every page and
action, the requests an attacker would send (other roles, other areas' records, missing
CSRF tokens, bad input), the s.62 consultation rows, and query counts that do not grow
with the data. Records, conflicts and quarantine are made by handhelds speaking the sync
protocol (tests/sync/conftest.py), on real PostgreSQL/PostGIS and Redis."""
from __future__ import annotations

import hashlib
import io
import uuid
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from PIL import Image

from fieldsync.sync.models import Attachment, Conflict, Device, QuarantinedMutation
from fieldsync.sync.tasks import attachment_thumbnail
from tests.sync.conftest import (
    IN_LEIGH,
    IN_WIGAN,
    OUTSIDE,
    PASSWORD,
    audit_data,
    build_world,
    item_data,
    mutation,
    now_iso,
    observation_data,
)
from warden_app.models import AccessLogEntry, Observation, Review, StreetAudit, User
from warden_app.roles import Role
from warden_app.services.roles import role_groups_ensure
from warden_app.services.teams import team_add_member

FORBIDDEN_ROLES = ["warden", "pcso", "analyst", "partner"]


# --- the world -------------------------------------------------------------------------------

@pytest.fixture
def world(db, settings):
    cache.clear()  # throttle counters of earlier tests live in Redis
    settings.SYNC_ENROL_RATE = "1000/min"  # tests enrol more handhelds than a person would
    world = build_world()
    groups = role_groups_ensure()
    boss = User.objects.create_user(username="supervisor_wigan", password=PASSWORD,
                                    organisation=world.orgs["council"])
    boss.groups.add(groups[Role.SUPERVISOR])
    team_add_member(team=world.teams["wigan"], user=boss, supervisor=True)
    world.users["supervisor_wigan"] = boss
    return world


def signed_in(world, username: str = "supervisor", csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(world.users[username])
    return client


def create(handheld, type_: str, data: dict, record_id=None) -> uuid.UUID:
    record_id = record_id or uuid.uuid4()
    result = handheld.push_one(mutation(type_, "create", record_id, data))
    assert result["status"] == "applied", result
    return record_id


def png(colour=(200, 30, 30), size=(48, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def upload(handheld, data: bytes) -> str:
    address = hashlib.sha256(data).hexdigest()
    response = handheld.client.put(f"/api/v1/attachments/{address}", data=data, content_type="image/png",
                                   **handheld.auth)
    assert response.status_code == 201, response.content
    return address


def make_conflict(world, username="warden", at=IN_LEIGH):
    """Two handhelds of one author change the same field from the same base version."""
    first = world.enrol(username)
    record_id = create(first, "observation", observation_data(at=at))
    second = world.enrol(username)
    assert first.push_one(mutation("observation", "update", record_id, {"description": "from first"},
                                   base_version=1))["status"] == "applied"
    result = second.push_one(mutation("observation", "update", record_id, {"description": "from second"},
                                      base_version=1))
    assert result["status"] == "conflict", result
    return Conflict.objects.get(pk=result["conflict_id"]), first, second, record_id


def make_quarantined(world, username="warden") -> QuarantinedMutation:
    handheld = world.enrol(username)
    bad = mutation("observation", "create", uuid.uuid4(), observation_data(incident_type="joyriding"))
    result = handheld.push_one(bad)
    assert result["status"] == "rejected", result
    return QuarantinedMutation.objects.get(mutation_id=bad["mutation_id"])


def consultations(record_id=None) -> list[AccessLogEntry]:
    """The desk's consultation rows. Handhelds write theirs too (a conflict's push answer
    shows the server's record), but always with their device: the desk never does."""
    rows = AccessLogEntry.objects.filter(action="consultation", device_id__isnull=True)
    if record_id is not None:
        rows = rows.filter(record_ids__contains=[record_id])
    return list(rows)


@pytest.fixture
def records(world):
    """A Leigh observation and street audit with one item, a Wigan observation, an
    observation outside every area by a Leigh warden, and one by the supervisor."""
    leigh = world.enrol("warden")
    audit_id = create(leigh, "street_audit", audit_data(title="Market St walk"))
    item_id = create(leigh, "audit_item", item_data(audit_id, grade="C", notes="crisp packets"))
    wigan = world.enrol("warden_wigan")
    own = world.enrol("supervisor")
    return {
        "leigh": create(leigh, "observation", observation_data(description="Group by the bus station")),
        "audit": audit_id,
        "item": item_id,
        "outside": create(leigh, "observation", observation_data(at=OUTSIDE, description="Out of town")),
        "wigan": create(wigan, "observation", observation_data(at=IN_WIGAN, description="Wigan pier group")),
        "own": create(own, "observation", observation_data(description="The supervisor's own")),
        "handheld": leigh,
    }


def desk_urls(records, conflict_id, item_id, device_id) -> list[tuple[str, str]]:
    obs = records["leigh"]
    return [
        ("get", "/review/"),
        ("get", f"/review/records/observation/{obs}/"),
        ("post", f"/review/records/observation/{obs}/review"),
        ("get", f"/review/records/observation/{obs}/photos/{'a' * 64}"),
        ("get", f"/review/records/observation/{obs}/photos/{'a' * 64}/thumb"),
        ("get", f"/review/records/street_audit/{records['audit']}/"),
        ("get", "/review/conflicts/"),
        ("get", f"/review/conflicts/{conflict_id}/"),
        ("post", f"/review/conflicts/{conflict_id}/"),
        ("get", "/review/quarantine/"),
        ("get", f"/review/quarantine/{item_id}/"),
        ("post", f"/review/quarantine/{item_id}/"),
        ("get", "/review/devices/"),
        ("post", f"/review/devices/{device_id}/revoke"),
    ]


# --- who gets in -------------------------------------------------------------------------------

def test_anonymous_is_sent_to_the_desk_login_from_every_page(world, records):
    conflict, *_ = make_conflict(world)
    item = make_quarantined(world)
    device = Device.objects.filter(user=world.users["warden"]).first()
    client = Client()
    for method, url in desk_urls(records, conflict.pk, item.pk, device.pk):
        response = getattr(client, method)(url)
        assert response.status_code == 302, (method, url)
        assert response["Location"].startswith("/review/login/?next="), (method, url)
    device.refresh_from_db()
    assert device.revoked_at is None
    assert not consultations()


@pytest.mark.parametrize("username", FORBIDDEN_ROLES)
def test_wardens_pcsos_analysts_and_partners_get_403_on_every_desk_page(world, records, username):
    conflict, *_ = make_conflict(world)
    item = make_quarantined(world)
    device = Device.objects.filter(user=world.users["warden"]).first()
    client = signed_in(world, username)
    data = {"decision": "approved", "field__description": "device", "note": "x"}
    for method, url in desk_urls(records, conflict.pk, item.pk, device.pk):
        response = getattr(client, method)(url, data) if method == "post" else client.get(url)
        assert response.status_code == 403, (username, method, url, response.status_code)
    assert Observation.objects.get(pk=records["leigh"]).review_state == "submitted"
    conflict.refresh_from_db()
    item.refresh_from_db()
    device.refresh_from_db()
    assert conflict.resolved_at is None and item.resolved_at is None and device.revoked_at is None
    assert not Review.objects.exists()
    assert not consultations()


def test_login_page_signs_a_supervisor_in_and_back_to_where_they_were_going(world):
    client = Client(enforce_csrf_checks=True)
    page = client.get("/review/login/?next=/review/devices/")
    assert page.status_code == 200
    token = page.cookies["csrftoken"].value
    refused = client.post("/review/login/", {"username": "supervisor", "password": PASSWORD})
    assert refused.status_code == 403  # no CSRF token
    wrong = client.post("/review/login/", {"username": "supervisor", "password": "nope",
                                           "csrfmiddlewaretoken": token})
    assert wrong.status_code == 200 and b"errors" in wrong.content
    response = client.post("/review/login/", {"username": "supervisor", "password": PASSWORD,
                                              "next": "/review/devices/", "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == "/review/devices/"
    assert client.get("/review/").status_code == 200
    # An off-site `next` is ignored.
    client2 = Client()
    client2.get("/review/login/")
    response = client2.post("/review/login/", {"username": "supervisor", "password": PASSWORD,
                                               "next": "https://evil.example/"})
    assert response["Location"] == "/review/"


@pytest.mark.parametrize("username", ["analyst", "partner", "warden"])
def test_anyone_else_signs_in_to_their_api_tokens_and_sees_only_that(world, username):
    """The desk's review pages are the supervisors'; the others come for their API tokens
    and are not shown links to pages that would answer 403."""
    client = Client()
    response = client.post("/review/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/review/tokens/"
    page = client.get("/review/tokens/").content.decode()
    assert 'href="/review/tokens/"' in page
    for supervisors_only in ("/review/conflicts/", "/review/quarantine/", "/review/devices/", 'href="/review/"'):
        assert supervisors_only not in page, supervisors_only
    supervisor = Client()
    supervisor.post("/review/login/", {"username": "supervisor", "password": PASSWORD})
    assert all(link in supervisor.get("/review/tokens/").content.decode()
               for link in ("/review/conflicts/", "/review/quarantine/", "/review/devices/"))


def test_sign_out_is_a_post(world):
    client = signed_in(world)
    assert client.get("/review/logout/").status_code == 405
    assert client.post("/review/logout/").status_code == 302
    assert client.get("/review/").status_code == 302


# --- the queue -----------------------------------------------------------------------------------

def rows_of(response) -> set[str]:
    return {str(row["id"]) for row in response.context["page"].object_list}


def test_queue_shows_the_supervisors_areas_and_their_teams_out_of_area_records_only(world, records):
    response = signed_in(world).get("/review/")
    assert response.status_code == 200
    assert rows_of(response) == {str(records["leigh"]), str(records["audit"]), str(records["outside"])}
    body = response.content.decode()
    assert "Outside every area" in body and "Street drinking" in body
    # Personal fields are not on the list, so the list logs no consultation.
    assert "Group by the bus station" not in body and "red coat" not in body
    assert not consultations()
    wigan = signed_in(world, "supervisor_wigan").get("/review/")
    assert rows_of(wigan) == {str(records["wigan"])}


def test_queue_filters_by_state_type_area_author_and_dates(world, records):
    from warden_app.services.review import review_decide

    other = world.enrol("warden2")
    old = create(other, "observation", observation_data(observed_at=now_iso(timedelta(days=-40))))
    review_decide(reviewer=world.users["supervisor"], record_type="observation", record_id=records["leigh"],
                  decision="approved")
    client = signed_in(world)
    leigh_area = world.areas["leigh"].pk
    assert rows_of(client.get("/review/")) == {str(records["audit"]), str(records["outside"]), str(old)}
    assert rows_of(client.get("/review/?state=approved")) == {str(records["leigh"])}
    assert rows_of(client.get("/review/?state=all&type=street_audit")) == {str(records["audit"])}
    assert rows_of(client.get("/review/?state=all&area=none")) == {str(records["outside"])}
    assert rows_of(client.get(f"/review/?state=all&area={leigh_area}&type=observation")) == {
        str(records["leigh"]), str(old)}
    assert rows_of(client.get(f"/review/?state=all&author={world.users['warden2'].pk}")) == {str(old)}
    # The desk's dates are the partnership's calendar days (TIME_ZONE), not UTC ones: near
    # midnight the two differ.
    since = (records_date := timezone.localdate(Observation.objects.get(pk=old).observed_at)) + timedelta(days=1)
    assert str(old) not in rows_of(client.get(f"/review/?state=all&date_from={since.isoformat()}"))
    assert rows_of(client.get(f"/review/?state=all&date_to={records_date.isoformat()}")) == {str(old)}
    # The filter offers only the supervisor's areas and the authors of records in scope.
    form = client.get("/review/").context["form"]
    assert {value for value, _ in form.fields["area"].choices} == {"", str(leigh_area), "none"}
    authors = {label for _, label in form.fields["author"].choices}
    assert authors == {"Anyone", "warden", "warden2"}


@pytest.mark.parametrize("query", [
    "state=bogus", "type=incident", "area=999999", "area=abc", f"author={10**12}", "author=x",
    "date_from=yesterday", "date_to=2024-13-45", "date_from=2025-02-01&date_to=2025-01-01",
    "page=abc", "page=99999", "page=-1", "state=%00", "area=1%27%20OR%201=1",
])
def test_queue_survives_bad_filters(world, records, query):
    response = signed_in(world).get(f"/review/?{query}")
    assert response.status_code == 200
    # Invalid values filter nothing; the records in scope are still there.
    assert rows_of(response) <= {str(records["leigh"]), str(records["audit"]), str(records["outside"])}


def test_queue_is_paginated_and_its_query_count_does_not_grow(world, django_assert_max_num_queries):
    handhelds = [world.enrol(name) for name in ("warden", "warden2", "pcso")]
    for n, handheld in enumerate(handhelds):
        handheld.push([
            mutation("observation", "create", uuid.uuid4(),
                     observation_data(observed_at=now_iso(timedelta(hours=-i - 1)))) for i in range(12)
        ] + [mutation("street_audit", "create", uuid.uuid4(), audit_data(title=f"walk {n}"))])
    client = signed_in(world)
    with django_assert_max_num_queries(12):
        first = client.get("/review/")
    assert first.status_code == 200
    page = first.context["page"]
    assert page.paginator.count == 39 and len(page.object_list) == 25 and page.has_next()
    with django_assert_max_num_queries(12):
        second = client.get("/review/?page=2")
    assert len(second.context["page"].object_list) == 14
    assert rows_of(first).isdisjoint(rows_of(second))
    with django_assert_max_num_queries(12):
        filtered = client.get(f"/review/?state=all&type=observation&page=2&author={world.users['pcso'].pk}")
    assert filtered.status_code == 200


# --- the record page -----------------------------------------------------------------------------

def test_record_page_shows_fields_photos_history_and_logs_one_consultation(world, media):
    handheld = world.enrol("warden")
    photo = upload(handheld, png())
    pending = hashlib.sha256(b"not uploaded yet").hexdigest()
    record_id = create(handheld, "observation", observation_data(photos=[photo, pending]))
    handheld.push_one(mutation("observation", "update", record_id, {"action_taken": ["contact_card"]},
                               base_version=1))
    client = signed_in(world)
    before = AccessLogEntry.objects.count()
    response = client.get(f"/review/records/observation/{record_id}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Group drinking by the bus station" in body and "male, 30s, red coat" in body
    assert f"/review/records/observation/{record_id}/photos/{photo}/thumb" in body
    assert "not yet uploaded" in body
    assert "leaflet/leaflet.js" in body and 'id="record-map-data"' in body
    assert "/media/" not in body
    versions = response.context["page"].versions
    assert [(v.version, v.user.username) for v in versions] == [(1, "warden"), (2, "warden")]
    assert versions[1].changed_fields == ["action_taken"]
    logged = AccessLogEntry.objects.filter(pk__gt=0).order_by("-id")[: AccessLogEntry.objects.count() - before]
    assert [(e.action, e.record_type, e.record_ids, e.actor_id) for e in logged] == [
        ("consultation", "observation", [record_id], world.users["supervisor"].pk)]
    assert set(logged[0].details["fields"]) == {"description", "persons_involved", "photos"}


def test_street_audit_page_lists_its_items_and_writes_no_consultation(world, records):
    response = signed_in(world).get(f"/review/records/street_audit/{records['audit']}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Market St walk" in body and "crisp packets" in body and "Litter" in body
    assert [item.pk for item in response.context["page"].items] == [records["item"]]
    assert [(v.item_number, v.version) for v in response.context["page"].item_versions] == [(1, 1)]
    assert not consultations()


def test_record_page_lists_reviews_and_open_conflicts(world):
    conflict, _, _, record_id = make_conflict(world)
    client = signed_in(world)
    client.post(f"/review/records/observation/{record_id}/review", {"decision": "comment", "note": "Seen"})
    response = client.get(f"/review/records/observation/{record_id}/")
    assert [c.pk for c in response.context["page"].conflicts] == [conflict.pk]
    assert f"/review/conflicts/{conflict.pk}/" in response.content.decode()
    assert [(r.decision, r.note) for r in response.context["page"].reviews] == [("comment", "Seen")]


def test_a_leigh_supervisor_cannot_open_or_act_on_wigan_or_own_records(world, records):
    client = signed_in(world, "supervisor")
    for key in ("wigan", "own"):
        record_id = records[key]
        assert client.get(f"/review/records/observation/{record_id}/").status_code == 404
        response = client.post(f"/review/records/observation/{record_id}/review",
                               {"decision": "approved", "version": 1})
        assert response.status_code == 404
        assert Observation.objects.get(pk=record_id).review_state == "submitted"
    # The same record under the other type, an unknown type, an unknown id: all 404.
    assert client.get(f"/review/records/street_audit/{records['leigh']}/").status_code == 404
    assert client.get(f"/review/records/audit_item/{records['item']}/").status_code == 404
    assert client.get(f"/review/records/observation/{uuid.uuid4()}/").status_code == 404
    assert client.get("/review/records/observation/not-a-uuid/").status_code == 404
    assert not Review.objects.exists()
    assert not consultations()
    # Its own supervisor opens it.
    assert signed_in(world, "supervisor_wigan").get(f"/review/records/observation/{records['wigan']}/") \
        .status_code == 200


# --- review actions ------------------------------------------------------------------------------

def test_return_with_issues_reaches_the_authors_handheld(world, records):
    handheld, record_id = records["handheld"], records["leigh"]
    handheld.pull_all()
    client = signed_in(world, csrf=True)
    page = client.get(f"/review/records/observation/{record_id}/")
    token = page.cookies["csrftoken"].value
    url = f"/review/records/observation/{record_id}/review"
    assert client.post(url, {"decision": "has_issues", "note": "Say what you did", "version": 1}).status_code == 403
    assert Observation.objects.get(pk=record_id).review_state == "submitted"
    response = client.post(url, {"decision": "has_issues", "note": "Say what you did", "version": 1,
                                 "csrfmiddlewaretoken": token})
    # On to the next record of the queue (test_next_in_queue_* below say which).
    assert response.status_code == 302 and response["Location"].startswith("/review/records/")
    assert str(record_id) not in response["Location"]
    record = Observation.objects.get(pk=record_id)
    assert (record.review_state, record.version) == ("has_issues", 2)
    review = Review.objects.get(observation_id=record_id)
    assert (review.decision, review.note, review.reviewer, review.record_version) == (
        "has_issues", "Say what you did", world.users["supervisor"], 2)
    assert AccessLogEntry.objects.filter(action="alteration", record_ids__contains=[record_id],
                                         actor=world.users["supervisor"]).exists()
    handheld.pull_all()
    change = handheld.store[("observation", str(record_id))]
    assert change["review"] == {"state": "has_issues", "note": "Say what you did",
                                "reviewed_at": change["review"]["reviewed_at"]}


def test_approve_then_only_comments(world, records):
    client = signed_in(world)
    url = f"/review/records/observation/{records['leigh']}/review"
    assert client.post(url, {"decision": "approved", "version": 1}).status_code == 302
    assert Observation.objects.get(pk=records["leigh"]).review_state == "approved"
    refused = client.post(url, {"decision": "rejected", "note": "changed my mind", "version": 2})
    assert refused.status_code == 409
    assert "takes comments only" in refused.content.decode()
    assert Observation.objects.get(pk=records["leigh"]).review_state == "approved"
    assert client.post(url, {"decision": "comment", "note": "Good work", "version": 2}).status_code == 302
    assert list(Review.objects.filter(observation_id=records["leigh"]).values_list("decision", flat=True)) == [
        "approved", "comment"]


def test_reject_and_review_a_street_audit(world, records):
    client = signed_in(world)
    url = f"/review/records/street_audit/{records['audit']}/review"
    assert client.post(url, {"decision": "rejected", "note": "Wrong street", "version": 1}).status_code == 302
    assert StreetAudit.objects.get(pk=records["audit"]).review_state == "rejected"
    assert Review.objects.get(street_audit_id=records["audit"]).note == "Wrong street"


@pytest.mark.parametrize("data", [
    {"decision": "has_issues", "note": "   ", "version": 1},
    {"decision": "rejected", "version": 1},
    {"decision": "comment", "note": ""},
    {"decision": "submitted", "note": "x"},
    {"decision": "", "note": "x"},
    {},
    {"decision": "approved", "version": "abc"},
    {"decision": "approved", "version": "0"},
    {"decision": "approved", "note": "x" * 5000},
])
def test_bad_decisions_are_refused_without_change(world, records, data):
    response = signed_in(world).post(f"/review/records/observation/{records['leigh']}/review", data)
    assert response.status_code == 400
    assert Observation.objects.get(pk=records["leigh"]).review_state == "submitted"
    assert not Review.objects.exists()


def test_a_decision_on_a_version_the_reviewer_has_not_seen_is_refused(world, records):
    handheld, record_id = records["handheld"], records["leigh"]
    handheld.push_one(mutation("observation", "update", record_id, {"description": "rewritten"}, base_version=1))
    response = signed_in(world).post(f"/review/records/observation/{record_id}/review",
                                     {"decision": "approved", "version": 1})
    assert response.status_code == 409
    assert "changed since version 1" in response.content.decode()
    assert Observation.objects.get(pk=record_id).review_state == "submitted"


def test_review_url_takes_posts_only(world, records):
    client = signed_in(world)
    assert client.get(f"/review/records/observation/{records['leigh']}/review").status_code == 405
    assert client.post(f"/review/records/observation/{records['leigh']}/").status_code == 405


# --- photos ----------------------------------------------------------------------------------------

def test_photos_are_served_only_through_the_permission_checked_view(world, media):
    handheld = world.enrol("warden")
    data = png()
    photo = upload(handheld, data)
    other = upload(handheld, png((0, 90, 0)))
    record_id = create(handheld, "observation", observation_data(photos=[photo]))
    audit_id = create(handheld, "street_audit", audit_data())
    create(handheld, "audit_item", item_data(audit_id, photos=[other]))
    client = signed_in(world)
    url = f"/review/records/observation/{record_id}/photos/{photo}"

    full = client.get(url)
    assert full.status_code == 200 and full["Content-Type"] == "image/png"
    assert {"private", "no-store"} <= {part.strip() for part in full["Cache-Control"].split(",")}
    stored = Attachment.objects.get(sha256=photo)
    assert b"".join(full.streaming_content) == stored.file.open("rb").read()
    assert [e.details.get("photo") for e in consultations(record_id)] == [photo]

    # No thumbnail yet: the photo itself; once made, the JPEG thumbnail. Each one handed
    # over is a consultation of its own: a thumbnail shows the person as well.
    assert client.get(url + "/thumb")["Content-Type"] == "image/png"
    assert attachment_thumbnail(photo) is True
    thumb = client.get(url + "/thumb")
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/jpeg"
    assert [e.details.get("view") for e in consultations(record_id)] == [
        "review_desk.photo", "review_desk.photo_thumb", "review_desk.photo_thumb"]

    # An item's photo through its audit's page (audit items hold no personal fields).
    item_photo = client.get(f"/review/records/street_audit/{audit_id}/photos/{other}")
    assert item_photo.status_code == 200
    assert not consultations(audit_id)

    # A photo the record does not name, a malformed address, another supervisor, no login,
    # and the storage's public URL: none of them get the bytes.
    assert client.get(f"/review/records/observation/{record_id}/photos/{other}").status_code == 404
    assert client.get(f"/review/records/observation/{record_id}/photos/{photo.upper()}").status_code == 404
    assert client.get(f"/review/records/observation/{record_id}/photos/..%2F..%2Fetc").status_code == 404
    assert signed_in(world, "supervisor_wigan").get(url).status_code == 404
    assert signed_in(world, "analyst").get(url).status_code == 403
    assert Client().get(url).status_code == 302
    assert Client().get(f"/media/{stored.file.name}").status_code == 404
    assert client.post(url).status_code == 405


def test_photo_named_but_not_uploaded_is_404(world):
    handheld = world.enrol("warden")
    missing = hashlib.sha256(b"later").hexdigest()
    record_id = create(handheld, "observation", observation_data(photos=[missing]))
    assert signed_in(world).get(f"/review/records/observation/{record_id}/photos/{missing}").status_code == 404


# --- conflicts -------------------------------------------------------------------------------------

def test_conflict_list_is_scoped_and_logs_nothing(world, django_assert_max_num_queries):
    leigh, *_ = make_conflict(world)
    wigan, *_ = make_conflict(world, "warden_wigan", at=IN_WIGAN)
    client = signed_in(world)
    with django_assert_max_num_queries(10):
        response = client.get("/review/conflicts/")
    assert response.status_code == 200
    assert [c.pk for c in response.context["page"].object_list] == [leigh.pk]
    assert "from second" not in response.content.decode()  # values are on the conflict's page only
    assert [c.pk for c in signed_in(world, "supervisor_wigan").get("/review/conflicts/")
            .context["page"].object_list] == [wigan.pk]
    assert not consultations()
    for show in ("resolved", "all", "bogus"):
        assert client.get(f"/review/conflicts/?show={show}&page=x").status_code == 200


def test_conflict_page_shows_both_values_and_resolves_with_the_device_value(world):
    conflict, first, _, record_id = make_conflict(world)
    client = signed_in(world, csrf=True)
    page = client.get(f"/review/conflicts/{conflict.pk}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "from first" in body and "from second" in body
    assert 'name="field__description" value="device"' in body
    assert [(e.record_type, e.record_ids) for e in consultations()] == [("observation", [record_id])]
    token = page.cookies["csrftoken"].value
    url = f"/review/conflicts/{conflict.pk}/"
    assert client.post(url, {"field__description": "device"}).status_code == 403  # no CSRF token
    assert client.post(url, {"csrfmiddlewaretoken": token}).status_code == 400  # no choice
    assert client.post(url, {"field__description": "both", "csrfmiddlewaretoken": token}).status_code == 400
    conflict.refresh_from_db()
    assert conflict.resolved_at is None
    response = client.post(url, {"field__description": "device", "note": "second is right",
                                 "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    conflict.refresh_from_db()
    assert conflict.resolved_by == world.users["supervisor"]
    assert conflict.resolution["choices"] == {"description": "device"}
    assert conflict.resolution["note"] == "second is right"
    record = Observation.objects.get(pk=record_id)
    assert (record.description, record.version) == ("from second", 3)
    first.pull_all()
    assert first.store[("observation", str(record_id))]["data"]["description"] == "from second"
    again = client.post(url, {"field__description": "server", "csrfmiddlewaretoken": token})
    assert again.status_code == 409
    assert Observation.objects.get(pk=record_id).description == "from second"
    assert "Resolved by supervisor" in client.get(url).content.decode()


def test_conflicts_of_other_areas_are_404(world):
    conflict, _, _, record_id = make_conflict(world, "warden_wigan", at=IN_WIGAN)
    client = signed_in(world)
    url = f"/review/conflicts/{conflict.pk}/"
    assert client.get(url).status_code == 404
    assert client.post(url, {"field__description": "device"}).status_code == 404
    assert client.get(f"/review/conflicts/{uuid.uuid4()}/").status_code == 404
    assert client.get("/review/conflicts/123/").status_code == 404
    conflict.refresh_from_db()
    assert conflict.resolved_at is None
    assert Observation.objects.get(pk=record_id).description == "from first"
    assert not consultations()


def test_conflict_on_an_audit_item_links_to_its_audit(world):
    first = world.enrol("warden")
    audit_id = create(first, "street_audit", audit_data())
    item_id = create(first, "audit_item", item_data(audit_id, notes="a"))
    second = world.enrol("warden")
    first.push_one(mutation("audit_item", "update", item_id, {"notes": "b"}, base_version=1))
    result = second.push_one(mutation("audit_item", "update", item_id, {"notes": "c"}, base_version=1))
    assert result["status"] == "conflict"
    client = signed_in(world)
    listed = client.get("/review/conflicts/").context["page"].object_list
    assert [(c.page_type, c.page_id) for c in listed] == [("street_audit", audit_id)]
    page = client.get(f"/review/conflicts/{result['conflict_id']}/")
    assert f"/review/records/street_audit/{audit_id}/" in page.content.decode()
    assert not consultations()  # audit items hold no personal fields
    assert client.post(f"/review/conflicts/{result['conflict_id']}/", {"field__notes": "server"}).status_code == 302


# --- quarantine ------------------------------------------------------------------------------------

def test_quarantine_list_shows_codes_errors_and_the_payload_without_personal_values(world):
    item = make_quarantined(world)
    make_quarantined(world, "warden_wigan")
    response = signed_in(world).get("/review/quarantine/")
    assert response.status_code == 200
    assert [i.pk for i in response.context["page"].object_list] == [item.pk]
    body = response.content.decode()
    # Labels, not the server's codes: the refusal, the field and its reason in words.
    assert "<td>Not valid</td>" in body and "<td>New record: Observation</td>" in body
    assert "<strong>Incident type</strong>: Not on the list" in body
    assert "validation_failed" not in body and "not_in_choices" not in body
    assert "joyriding" in body and "(withheld)" in body
    assert "red coat" not in body and "Group drinking" not in body
    # What else a refused payload holds is whatever the handheld sent: showing it is logged.
    [logged] = consultations()
    assert logged.actor == world.users["supervisor"] and logged.details == {
        "view": "review_desk.quarantine_list", "quarantine": [item.pk]}


def test_quarantine_item_shows_the_raw_payload_logs_it_and_resolves_with_a_note(world):
    item = make_quarantined(world)
    client = signed_in(world, csrf=True)
    url = f"/review/quarantine/{item.pk}/"
    page = client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert "red coat" in body and "joyriding" in body
    logged = consultations()
    assert len(logged) == 1 and logged[0].details["quarantine"] == item.pk
    assert logged[0].record_ids == [uuid.UUID(item.record_id)]
    token = page.cookies["csrftoken"].value
    assert client.post(url, {"note": "re-keyed"}).status_code == 403
    assert client.post(url, {"note": "   ", "csrfmiddlewaretoken": token}).status_code == 400
    item.refresh_from_db()
    assert item.resolved_at is None
    assert client.post(url, {"note": "Re-keyed as rowdy behaviour", "csrfmiddlewaretoken": token}).status_code == 302
    item.refresh_from_db()
    assert (item.resolved_by, item.resolution_note) == (world.users["supervisor"], "Re-keyed as rowdy behaviour")
    assert client.post(url, {"note": "again", "csrfmiddlewaretoken": token}).status_code == 409
    item.refresh_from_db()
    assert item.resolution_note == "Re-keyed as rowdy behaviour"


def test_quarantine_of_other_teams_and_odd_ids_are_404(world):
    item = make_quarantined(world, "warden_wigan")
    client = signed_in(world)
    assert client.get(f"/review/quarantine/{item.pk}/").status_code == 404
    assert client.post(f"/review/quarantine/{item.pk}/", {"note": "mine now"}).status_code == 404
    assert client.get(f"/review/quarantine/{10**30}/").status_code == 404
    assert client.get("/review/quarantine/-1/").status_code == 404
    item.refresh_from_db()
    assert item.resolved_at is None


def test_quarantine_of_a_garbled_mutation_is_shown(world):
    handheld = world.enrol("warden")
    result = handheld.push([{"mutation_id": "not-a-uuid", "type": "nonsense", "op": 7, "data": ["x"]}])
    assert result["results"][0]["status"] == "rejected"
    item = QuarantinedMutation.objects.get(user=world.users["warden"])
    client = signed_in(world)
    assert client.get("/review/quarantine/").status_code == 200
    assert client.get(f"/review/quarantine/{item.pk}/").status_code == 200


# --- devices -------------------------------------------------------------------------------------

def test_team_devices_show_health_and_a_supervisor_revokes_one(world, django_assert_max_num_queries):
    _, first, second, _ = make_conflict(world)
    make_quarantined(world, "pcso")
    missing = hashlib.sha256(b"never sent").hexdigest()
    create(first, "observation", observation_data(photos=[missing]))
    wigan = world.enrol("warden_wigan")
    client = signed_in(world, csrf=True)
    with django_assert_max_num_queries(14):
        page = client.get("/review/devices/")
    assert page.status_code == 200
    rows = {str(row.device.pk): row for row in page.context["rows"]}
    assert wigan.device_id not in rows
    assert (rows[first.device_id].missing_photos, rows[first.device_id].open_conflicts) == (1, 0)
    assert (rows[second.device_id].open_conflicts, rows[second.device_id].open_quarantine) == (1, 0)
    pcso_device = Device.objects.get(user=world.users["pcso"])
    assert rows[str(pcso_device.pk)].open_quarantine == 1
    body = page.content.decode()
    assert f"/review/devices/{first.device_id}/revoke" in body and "csrfmiddlewaretoken" in body

    token = page.cookies["csrftoken"].value
    url = f"/review/devices/{first.device_id}/revoke"
    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 403  # no CSRF token
    assert Device.objects.get(pk=first.device_id).revoked_at is None
    assert client.post(url, {"csrfmiddlewaretoken": token}).status_code == 302
    device = Device.objects.get(pk=first.device_id)
    assert device.revoked_by == world.users["supervisor"] and device.revoked_at is not None
    response = first.get("/api/v1/sync/manifest")
    assert response.status_code == 401 and response.json()["code"] == "device_revoked"
    # Revoked once; a second press changes nothing.
    assert client.post(url, {"csrfmiddlewaretoken": token}).status_code == 302
    assert Device.objects.get(pk=first.device_id).revoked_at == device.revoked_at
    # Another team's device, and one that does not exist.
    assert client.post(f"/review/devices/{wigan.device_id}/revoke", {"csrfmiddlewaretoken": token}).status_code == 404
    assert client.post(f"/review/devices/{uuid.uuid4()}/revoke", {"csrfmiddlewaretoken": token}).status_code == 404
    assert Device.objects.get(pk=wigan.device_id).revoked_at is None


def test_device_page_query_count_does_not_grow_with_devices(world, django_assert_max_num_queries):
    for name in ("warden", "warden2", "pcso") * 4:
        handheld = world.enrol(name)
        create(handheld, "observation", observation_data(photos=[hashlib.sha256(name.encode()).hexdigest()]))
    client = signed_in(world)
    with django_assert_max_num_queries(14):
        response = client.get("/review/devices/")
    assert len(response.context["rows"]) == 12
    assert sum(row.missing_photos for row in response.context["rows"]) == 12


def test_a_decision_refused_as_stale_can_be_made_again_on_the_version_now_shown(world, records):
    """The warden's fix arrives while the supervisor reads v1: the approval is refused, the
    page shows the new version with the note kept, and approving again then works."""
    handheld, record_id = records["handheld"], records["leigh"]
    handheld.pull_all()
    assert handheld.push_one(mutation("observation", "update", record_id, {"description": "Group of six"},
                                      base_version=1))["status"] == "applied"
    client = signed_in(world)
    url = f"/review/records/observation/{record_id}/review"
    refused = client.post(url, {"decision": "approved", "note": "Fine", "version": 1})
    assert refused.status_code == 409
    form = refused.context["form"]
    assert form["version"].value() == 2 and form["note"].value() == "Fine"
    assert form["decision"].value() == "approved"
    assert "changed since version 1" in " ".join(form.non_field_errors())
    page = refused.content.decode()
    assert "Group of six" in page and 'name="version" value="2"' in page
    assert Observation.objects.get(pk=record_id).review_state != "approved"
    assert not Review.objects.filter(observation_id=record_id).exists()
    # What the supervisor's browser sends when they press Approve again on that page.
    again = client.post(url, {"decision": "approved", "note": form["note"].value(), "version": form["version"].value()})
    assert again.status_code == 302
    assert Observation.objects.get(pk=record_id).review_state == "approved"
    approval = Review.objects.get(observation_id=record_id)
    assert (approval.decision, approval.note, approval.record_version) == ("approved", "Fine", 3)


# --- labels, not raw keys ------------------------------------------------------------------------

def test_labels_name_fields_codes_refusals_and_keep_what_they_do_not_know():
    from warden_app.review_desk import labels

    assert labels.field("incident_type") == "Incident type"
    assert labels.field("persons_involved") == "Persons involved"
    assert labels.field("_deleted") == "Delete the record"
    assert labels.fields(["description", "location"]) == "Description, Location"
    assert labels.value("incident_type", "street_drinking") == "Street drinking"
    assert labels.value("issue_type", "graffiti") == "Graffiti"
    assert labels.value("action_taken", ["advice", "warning"]) == ["Advice given", "Verbal warning"]
    assert labels.value("grade", "C") == "C: widespread minor accumulations"
    assert labels.value("fix_source", "manual") == "Manual pin"
    assert labels.value("description", "litter") == "litter"  # free text is never "translated"
    assert labels.record_type("street_audit") == "Street audit"
    assert labels.refusal("validation_failed") == "Not valid"
    assert labels.error_code("not_in_choices") == "Not on the list"
    assert labels.token_state("password_changed") == "Ended by a password change"
    # A code a newer handheld sends is shown as it came, not dropped.
    assert labels.value("incident_type", "joyriding") == "joyriding"
    assert labels.field("colour_of_door") == "colour_of_door"


def test_record_page_shows_labels_for_grades_history_and_persons(world, records):
    client = signed_in(world)
    body = client.get(f"/review/records/street_audit/{records['audit']}/").content.decode()
    assert "<td>Litter</td><td>C: widespread minor accumulations</td>" in body
    observation = client.get(f"/review/records/observation/{records['leigh']}/").content.decode()
    assert "<em>Approximate age</em>: 35" in observation and "approx_age" not in observation
    assert "Street drinking" in observation and "street_drinking" not in observation
    records["handheld"].push_one(mutation("observation", "update", records["leigh"],
                                          {"incident_type": "noise", "persons_involved": []}, base_version=1))
    history = client.get(f"/review/records/observation/{records['leigh']}/").content.decode()
    assert "Incident type, Persons involved" in history and "incident_type" not in history


def test_conflict_pages_name_the_fields_and_the_codes_of_both_sides(world):
    first = world.enrol("warden")
    record_id = create(first, "observation", observation_data())
    second = world.enrol("warden")
    assert first.push_one(mutation("observation", "update", record_id, {"incident_type": "noise"},
                                   base_version=1))["status"] == "applied"
    result = second.push_one(mutation("observation", "update", record_id, {"incident_type": "trespass"},
                                      base_version=1))
    assert result["status"] == "conflict", result
    client = signed_in(world)
    listing = client.get("/review/conflicts/").content.decode()
    assert "<td>Incident type</td>" in listing and "<td>Observation" in listing
    page = client.get(f"/review/conflicts/{result['conflict_id']}/").content.decode()
    assert '<th scope="row">Incident type</th>' in page
    assert "<pre>Trespass</pre>" in page and "<pre>Noise</pre>" in page
    assert "incident_type</th>" not in page and "<pre>noise</pre>" not in page


# --- next in queue -------------------------------------------------------------------------------

@pytest.fixture
def queue(world):
    """Four Leigh observations a minute apart (newest first: a, b, c, d), d by another author."""
    handheld = world.enrol("warden")
    other = world.enrol("warden2")
    ids = {}
    for n, name in enumerate("abcd"):
        data = observation_data(observed_at=now_iso(timedelta(minutes=-10 - n)), description=f"record {name}")
        ids[name] = create(other if name == "d" else handheld, "observation", data)
    return ids


def decide(client, record_id, decision="approved", queue="", note=""):
    return client.post(f"/review/records/observation/{record_id}/review",
                       {"decision": decision, "version": 1, "note": note, "queue": queue})


def test_next_in_queue_is_the_record_after_the_decided_one_then_the_queue_when_empty(world, queue):
    client = signed_in(world)
    response = decide(client, queue["b"])
    assert response.status_code == 302
    assert response["Location"] == f"/review/records/observation/{queue['c']}/"
    [message] = [str(m) for m in client.get(response["Location"]).context["messages"]]
    assert message == "Approved: saved as version 2. Next in the queue: observation \u201cStreet drinking\u201d."
    # After the last one, back to the first still to review (b has left the queue).
    response = decide(client, queue["d"], "rejected", note="Not ours")
    assert response["Location"] == f"/review/records/observation/{queue['a']}/"
    decide(client, queue["a"], "has_issues", note="Which bench?")
    response = decide(client, queue["c"])
    assert response["Location"] == "/review/"
    page = client.get("/review/")
    assert [str(m) for m in page.context["messages"]][-1] == "Approved: saved as version 2. Nothing left to review."
    assert page.context["page"].paginator.count == 0


def test_next_in_queue_keeps_the_filters_the_supervisor_came_with(world, queue):
    client = signed_in(world)
    author = world.users["warden"].pk
    page = client.get(f"/review/?author={author}&page=1&bogus=1")
    link = f"/review/records/observation/{queue['a']}/?author={author}"
    assert link in page.content.decode()  # the queue's links carry its filters, not its page
    record = client.get(link).content.decode()
    assert f'name="queue" value="author={author}"' in record
    assert f'href="/review/?author={author}">← Queue' in record
    response = decide(client, queue["c"], queue=f"author={author}")
    # d is next in time but by someone else: the filtered queue goes on with a.
    assert response["Location"] == f"/review/records/observation/{queue['a']}/?author={author}"
    decide(client, queue["a"], queue=f"author={author}")
    response = decide(client, queue["b"], queue=f"author={author}")
    assert response["Location"] == f"/review/?author={author}"
    # A bad filter value filters nothing rather than failing.
    assert decide(client, queue["d"], queue="author=nobody&state=<x>")["Location"] == "/review/"


def test_a_comment_stays_on_its_record(world, queue):
    client = signed_in(world)
    response = decide(client, queue["a"], "comment", note="Seen")
    assert response["Location"] == f"/review/records/observation/{queue['a']}/"


# --- the queue's map -----------------------------------------------------------------------------

def test_queue_map_has_the_filtered_queue_in_scope_and_no_more_than_its_rows_show(world, records):
    client = signed_in(world)
    data = client.get("/review/").context["map_data"]
    points = [f for f in data["features"] if f["properties"]["kind"] == "record"]
    urls = {f["properties"]["url"] for f in points}
    assert urls == {f"/review/records/observation/{records['leigh']}/",
                    f"/review/records/observation/{records['outside']}/",
                    f"/review/records/street_audit/{records['audit']}/"}
    assert {f["properties"]["label"] for f in data["features"] if f["properties"]["kind"] == "area"} == {"Leigh"}
    body = str(data)
    assert "bus station" not in body and "red coat" not in body  # descriptions, persons: not on the map
    assert set(points[0]["properties"]) == {"kind", "type", "summary", "author", "area", "state",
                                            "review_state", "when", "url"}
    filtered = client.get("/review/?type=street_audit").context["map_data"]
    assert [f["properties"]["url"] for f in filtered["features"] if f["properties"]["kind"] == "record"] == [
        f"/review/records/street_audit/{records['audit']}/"]


def test_queue_map_is_capped(world, records, monkeypatch):
    from warden_app.review_desk import selectors

    monkeypatch.setattr(selectors, "MAP_POINTS", 2)
    page = signed_in(world).get("/review/")
    data = page.context["map_data"]
    assert data["capped"] is True
    assert len([f for f in data["features"] if f["properties"]["kind"] == "record"]) == 2
    assert "The newest 2 records of this queue are on the map" in page.content.decode()
