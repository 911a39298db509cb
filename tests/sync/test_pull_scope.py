"""Pull scope (protocol section 5): what a device receives, what it is told to remove, and
how records look on the way out."""
from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.utils import timezone

from .conftest import IN_LEIGH, IN_WIGAN, OUTSIDE, mutation, observation_data, point
from .pull_support import (
    age,
    age_to,
    create_observations,
    cursor_body,
    ids_of,
    ops_by_id,
    review,
)

PERSONAL = {"description", "persons_involved", "photos"}


# --- first sync, paging -------------------------------------------------------------------

def test_first_sync_pages_every_record_once_with_has_more(world):
    """limit=3 over 10 records in scope: 3, 3, 3, 1, every record exactly once, has_more
    true until the last page. Half the records are the device user's own (they live under
    two of its keys) and must not be sent twice either."""
    warden, warden2 = world.enrol("warden"), world.enrol("warden2")
    own = create_observations(warden, 5)
    others = create_observations(warden2, 5)
    reader = world.enrol("warden")
    sizes, flags, seen = [], [], []
    for _ in range(10):
        page = reader.pull(limit=3)
        sizes.append(len(page["changes"]))
        flags.append(page["has_more"])
        seen += [c["id"] for c in page["changes"]]
        assert all(c["op"] == "upsert" for c in page["changes"])
        reader.cursor = page["cursor"]
        if not page["has_more"]:
            break
    assert sizes == [3, 3, 3, 1]
    assert flags == [True, True, True, False]
    assert sorted(seen) == sorted(own + others)
    # Nothing new: an empty page, no more.
    page = reader.pull(limit=3)
    assert page["changes"] == [] and page["has_more"] is False


def test_exact_multiple_of_limit_ends_without_an_empty_page(world):
    warden2 = world.enrol("warden2")
    created = create_observations(warden2, 6)
    reader = world.enrol("warden")
    first = reader.pull(limit=3)
    assert first["has_more"] is True
    reader.cursor = first["cursor"]
    second = reader.pull(limit=3)
    assert second["has_more"] is False
    assert sorted(c["id"] for c in first["changes"] + second["changes"]) == sorted(created)


def test_first_sync_of_everything_in_scope_includes_audits_and_items(world):
    from .conftest import audit_data, item_data

    warden2 = world.enrol("warden2")
    audit, item = uuid.uuid4(), uuid.uuid4()
    results = warden2.push([mutation("street_audit", "create", audit, audit_data()),
                            mutation("audit_item", "create", item, item_data(audit))])["results"]
    assert [r["status"] for r in results] == ["applied", "applied"]
    reader = world.enrol("warden")
    changes = reader.pull_all(limit=1)
    order = [(c["type"], c["id"]) for c in changes]
    assert order == [("street_audit", str(audit)), ("audit_item", str(item))]  # parent first


# --- who receives what --------------------------------------------------------------------

def test_warden_does_not_receive_wigan_records(world):
    wigan = world.enrol("warden_wigan")
    in_wigan = create_observations(wigan, 2, at=IN_WIGAN)
    in_leigh = create_observations(world.enrol("warden2"), 1)
    warden = world.enrol("warden")
    warden.pull_all()
    assert ids_of(warden.store) == set(in_leigh)
    wigan.pull_all()
    assert ids_of(wigan.store) == set(in_wigan)
    supervisor = world.enrol("supervisor")  # supervises Leigh only
    supervisor.pull_all()
    assert ids_of(supervisor.store) == set(in_leigh)


def test_supervisor_receives_out_of_area_records_of_team_members(world):
    warden = world.enrol("warden")
    outside = create_observations(warden, 2, at=OUTSIDE)
    elsewhere = create_observations(world.enrol("warden_wigan"), 1, at=OUTSIDE)  # not their team
    supervisor = world.enrol("supervisor")
    supervisor.pull_all()
    assert ids_of(supervisor.store) == set(outside)
    change = supervisor.store[("observation", outside[0])]
    assert change["area"] is None and change["author"] == "warden"
    assert change["data"].keys() >= PERSONAL  # supervisors see personal fields of their team
    teammate = world.enrol("warden2")
    teammate.pull_all()
    assert ids_of(teammate.store) == set()  # out-of-area records of colleagues are not theirs
    author = world.enrol("warden")
    author.pull_all()
    assert ids_of(author.store) == set(outside)
    other = world.enrol("warden_wigan")
    other.pull_all()
    assert ids_of(other.store) == set(elsewhere)


def test_supervisor_stops_receiving_out_of_area_records_of_a_member_who_leaves(world):
    from warden_app.services.teams import team_remove_member

    outside = create_observations(world.enrol("warden"), 1, at=OUTSIDE)
    supervisor = world.enrol("supervisor")
    supervisor.pull_all()
    assert ids_of(supervisor.store) == set(outside)
    team_remove_member(team=world.teams["leigh"], user=world.users["warden"])
    changes = supervisor.pull_all()
    assert ops_by_id(changes)[outside[0]] == ["evict"]
    assert ids_of(supervisor.store) == set()


# --- the sync window ----------------------------------------------------------------------

def test_sync_window_sends_only_recent_records_and_own_open_ones(world):
    days = settings.SYNC_WINDOW_DAYS
    warden, warden2 = world.enrol("warden"), world.enrol("warden2")
    own_old_open = create_observations(warden, 2)
    own_old_approved = create_observations(warden, 1)
    own_recent = create_observations(warden, 1)
    others_old = create_observations(warden2, 2)
    others_recent = create_observations(warden2, 1)
    others_just_inside = create_observations(warden2, 1)
    review(own_old_approved[0], reviewer=world.users["supervisor"], decision="approved")
    age("observation", own_old_open + own_old_approved + others_old, days=days + 5)
    age("observation", others_just_inside, days=days - 0.5)
    reader = world.enrol("warden")
    changes = reader.pull_all(limit=2)
    assert {c["op"] for c in changes} == {"upsert"}  # a first sync sends nothing to remove
    assert ids_of(reader.store) == set(own_old_open + own_recent + others_recent + others_just_inside)
    other_reader = world.enrol("warden2")
    other_reader.pull_all()
    # warden2 sees warden's open records only while they are within the window, and
    # its own open records whatever their age.
    assert ids_of(other_reader.store) == set(own_recent + others_old + others_recent + others_just_inside)


def test_record_ageing_out_of_the_window_is_evicted(world, monkeypatch):
    """Time passes: what the device holds and is no longer within the window is evicted,
    except the user's own records that are not approved."""
    from fieldsync.sync import pull

    warden = world.enrol("warden")
    own_open = create_observations(warden, 1)
    own_approved = create_observations(warden, 1)
    review(own_approved[0], reviewer=world.users["supervisor"], decision="approved")
    others = create_observations(world.enrol("warden2"), 2)
    reader = world.enrol("warden")
    reader.pull_all()
    assert ids_of(reader.store) == set(own_open + own_approved + others)

    real_now = timezone.now
    later = SimpleNamespace(now=lambda: real_now() + timedelta(days=settings.SYNC_WINDOW_DAYS, hours=1))
    monkeypatch.setattr(pull, "timezone", later)
    changes = reader.pull_all(limit=1)
    ops = ops_by_id(changes)
    assert ops[others[0]] == ["evict"] and ops[others[1]] == ["evict"]
    assert ops[own_approved[0]] == ["evict"]
    assert "evict" not in ops.get(own_open[0], [])
    assert ids_of(reader.store) == set(own_open)
    # Evicted once: the next pull is quiet.
    assert reader.pull_all() == []


def test_record_whose_last_change_passes_the_window_edge_is_evicted(world):
    """The same through the database: the record's last change is moved to just past the
    window's edge (later than the edge the device was last evicted through, as time does)."""
    warden2 = world.enrol("warden2")
    kept, aged = create_observations(warden2, 2)
    reader = world.enrol("warden")
    reader.pull_all()
    edge = timezone.datetime.fromisoformat(cursor_body(reader.cursor)["w"])
    at = timezone.now() - timedelta(days=settings.SYNC_WINDOW_DAYS, milliseconds=1)
    assert at > edge
    age_to("observation", [aged], at)
    changes = reader.pull_all()
    assert [(c["id"], c["op"]) for c in changes] == [(aged, "evict")]
    assert ids_of(reader.store) == {kept}


# --- evictions: rights removed ------------------------------------------------------------

@pytest.mark.parametrize("how", ["team_loses_area", "member_leaves_team"])
def test_area_rights_removed_evicts_area_records_but_keeps_own_open_ones(world, how):
    from warden_app.services.teams import team_remove_member, team_set_areas

    warden, warden2 = world.enrol("warden"), world.enrol("warden2")
    own_open = create_observations(warden, 2)
    others = create_observations(warden2, 3)
    reader = world.enrol("warden")
    reader.pull_all()
    assert ids_of(reader.store) == set(own_open + others)
    # Changed after the device's last pull, before the rights go: still evicted.
    edited = warden2.push_one(mutation("observation", "update", others[0], {"description": "later"},
                                       base_version=1))
    assert edited["status"] == "applied"
    fresh = create_observations(warden2, 1)  # never seen by the device: nothing to remove

    if how == "team_loses_area":
        team_set_areas(team=world.teams["leigh"], areas=[world.areas["leigh_west"]])
    else:
        team_remove_member(team=world.teams["leigh"], user=world.users["warden"])

    changes = reader.pull_all(limit=2)
    ops = ops_by_id(changes)
    for rid in others:
        assert ops.get(rid) == ["evict"], (rid, ops)
    for rid in own_open:
        assert "evict" not in ops.get(rid, [])
    assert "upsert" not in ops.get(fresh[0], [])
    assert ids_of(reader.store) == set(own_open)
    assert reader.pull_all() == []

    # Rights back: the area's records come back as upserts on the next pull.
    if how == "team_loses_area":
        team_set_areas(team=world.teams["leigh"], areas=[world.areas["leigh"]])
    else:
        from warden_app.services.teams import team_add_member

        team_add_member(team=world.teams["leigh"], user=world.users["warden"])
    changes = reader.pull_all(limit=2)
    assert {c["op"] for c in changes} == {"upsert"}
    assert ids_of(reader.store) == set(own_open + others + fresh)


def test_evictions_of_a_left_area_are_paged(world):
    from warden_app.services.teams import team_remove_member

    others = create_observations(world.enrol("warden2"), 7)
    reader = world.enrol("warden")
    reader.pull_all()
    team_remove_member(team=world.teams["leigh"], user=world.users["warden"])
    pages = []
    for _ in range(10):
        page = reader.pull(limit=3)
        pages.append(page)
        reader.cursor = page["cursor"]
        if not page["has_more"]:
            break
    evicted = [c["id"] for p in pages for c in p["changes"]]
    assert sorted(evicted) == sorted(others)
    assert all(c["op"] == "evict" for p in pages for c in p["changes"])
    assert [len(p["changes"]) for p in pages] == [3, 3, 1]


def test_evicting_a_left_area_does_not_replay_its_history(world):
    """Records of the area that fell out of the window before the area was left were
    evicted (or never sent) already: leaving the area does not send them again."""
    warden2 = world.enrol("warden2")
    old = create_observations(warden2, 4)
    age("observation", old, days=settings.SYNC_WINDOW_DAYS + 10)
    recent = create_observations(warden2, 2)
    reader = world.enrol("warden")
    reader.pull_all()
    assert ids_of(reader.store) == set(recent)
    from warden_app.services.teams import team_remove_member

    team_remove_member(team=world.teams["leigh"], user=world.users["warden"])
    changes = reader.pull_all()
    assert sorted(c["id"] for c in changes) == sorted(recent)


# --- evictions: record moved --------------------------------------------------------------

def test_record_moved_to_another_area(world):
    """A supervisor of both areas moves a Leigh record to Wigan: devices following Leigh
    get `evict`, devices following Wigan get `upsert`, the author keeps it."""
    from warden_app.services.teams import team_add_member

    team_add_member(team=world.teams["wigan"], user=world.users["supervisor"], supervisor=True)
    author = world.enrol("warden")
    moved, stays = create_observations(author, 2)
    leigh_reader, wigan_reader = world.enrol("warden2"), world.enrol("warden_wigan")
    leigh_reader.pull_all()
    wigan_reader.pull_all()
    author.pull_all()
    assert ids_of(leigh_reader.store) == {moved, stays}
    assert ids_of(wigan_reader.store) == set()

    supervisor = world.enrol("supervisor")
    result = supervisor.push_one(mutation("observation", "update", moved, {"location": point(IN_WIGAN)},
                                          base_version=1))
    assert result["status"] == "applied", result

    assert [(c["id"], c["op"]) for c in leigh_reader.pull_all()] == [(moved, "evict")]
    assert ids_of(leigh_reader.store) == {stays}
    changes = wigan_reader.pull_all()
    assert [(c["id"], c["op"]) for c in changes] == [(moved, "upsert")]
    assert changes[0]["area"] == world.areas["wigan"].pk
    assert changes[0]["data"].keys() >= PERSONAL  # the same council
    changes = author.pull_all()
    assert [(c["id"], c["op"]) for c in changes] == [(moved, "upsert")]
    assert author.store[("observation", moved)]["area"] == world.areas["wigan"].pk


def test_author_moving_own_record_out_of_their_areas_is_refused(world):
    """The pcso may not move an own record to Wigan: nothing changes, nothing is evicted."""
    pcso = world.enrol("pcso")
    rid = create_observations(pcso, 1)[0]
    reader = world.enrol("warden")
    reader.pull_all()
    result = pcso.push_one(mutation("observation", "update", rid, {"location": point(IN_WIGAN)}, base_version=1))
    assert result["status"] == "rejected"
    assert reader.pull_all() == []
    assert ids_of(reader.store) == {rid}


def test_record_moved_by_a_service_into_the_area_arrives(world):
    """A record moved into the device's area by a server-side change (an ORM update and
    the feed touched, as a service does) arrives as upsert; devices of the old area that
    held it get evict."""
    from django.contrib.gis.geos import Point

    from warden_app.models import Observation
    from warden_app.services.teams import team_add_member

    from .pull_support import touch_feed

    team_add_member(team=world.teams["wigan"], user=world.users["supervisor"], supervisor=True)
    rid = create_observations(world.enrol("supervisor"), 1, at=IN_WIGAN)[0]
    reader = world.enrol("warden")
    wigan_reader = world.enrol("warden_wigan")
    reader.pull_all()
    wigan_reader.pull_all()
    assert ids_of(reader.store) == set()
    assert ids_of(wigan_reader.store) == {rid}

    Observation.objects.filter(pk=rid).update(location=Point(*IN_LEIGH, srid=4326), version=2,
                                              updated_at=timezone.now())
    assert Observation.objects.get(pk=rid).area_id == world.areas["leigh"].pk  # the area trigger
    touch_feed("observation", rid)
    changes = reader.pull_all()
    assert [(c["id"], c["op"]) for c in changes] == [(rid, "upsert")]
    assert changes[0]["area"] == world.areas["leigh"].pk and changes[0]["version"] == 2
    assert [(c["id"], c["op"]) for c in wigan_reader.pull_all()] == [(rid, "evict")]
    assert ids_of(wigan_reader.store) == set()


# --- deletes ------------------------------------------------------------------------------

def test_delete_is_sent_as_delete(world):
    author = world.enrol("warden")
    gone, kept = create_observations(author, 2)
    reader = world.enrol("warden2")
    reader.pull_all()
    author.pull_all()
    result = author.push_one(mutation("observation", "delete", gone, base_version=1))
    assert result["status"] == "applied"
    changes = reader.pull_all()
    assert [(c["id"], c["op"], c["version"]) for c in changes] == [(gone, "delete", 2)]
    assert ids_of(reader.store) == {kept}
    assert [(c["id"], c["op"]) for c in author.pull_all()] == [(gone, "delete")]
    # A first sync after the delete has nothing to remove: the tombstone is not sent.
    fresh = world.enrol("warden2")
    assert [(c["id"], c["op"]) for c in fresh.pull_all()] == [(kept, "upsert")]


# --- what an upsert carries ---------------------------------------------------------------

def test_personal_fields_are_redacted_for_another_organisation(world):
    rid = create_observations(world.enrol("warden"), 1)[0]
    views = {}
    for username in ("pcso", "warden2", "supervisor", "warden"):
        handheld = world.enrol(username)
        handheld.pull_all()
        views[username] = handheld.store[("observation", rid)]["data"]
    assert PERSONAL.isdisjoint(views["pcso"]), views["pcso"]
    assert views["pcso"]["incident_type"] == "street_drinking"
    for username in ("warden2", "supervisor", "warden"):
        assert views[username].keys() >= PERSONAL, username
        assert views[username]["description"] == "Group drinking by the bus station"
        assert views[username]["persons_involved"] == [{"description": "male, 30s, red coat", "approx_age": 35}]


def test_redaction_holds_for_the_police_own_records_seen_by_council(world):
    """The other way round: the council warden sees no personal fields of a pcso's record."""
    rid = create_observations(world.enrol("pcso"), 1)[0]
    warden = world.enrol("warden")
    warden.pull_all()
    assert PERSONAL.isdisjoint(warden.store[("observation", rid)]["data"])
    pcso = world.enrol("pcso")
    pcso.pull_all()
    assert pcso.store[("observation", rid)]["data"].keys() >= PERSONAL


def test_upsert_carries_the_server_fields(world):
    author = world.enrol("warden")
    rid = create_observations(author, 1)[0]
    review(rid, reviewer=world.users["supervisor"], decision="has_issues", note="Add the street name")
    author.pull_all()
    change = author.store[("observation", rid)]
    assert change["op"] == "upsert" and change["type"] == "observation" and change["id"] == rid
    assert change["version"] == 2
    assert change["area"] == world.areas["leigh"].pk
    assert change["author"] == "warden"
    assert change["organisation"] == world.orgs["council"].pk
    assert timezone.datetime.fromisoformat(change["server_time"]) <= timezone.now()
    assert change["review"]["state"] == "has_issues"
    assert change["review"]["note"] == "Add the street name"
    assert change["review"]["reviewed_at"] is not None
    assert set(change["data"]) >= {"qualifier", "incident_type", "observed_at", "location", "accuracy_m",
                                   "fix_source", "form_version"}
    assert change["data"]["location"] == point(IN_LEIGH)
    # The server-owned fields live beside `data`, never inside it.
    assert {"version", "area", "author", "organisation", "server_time", "review"}.isdisjoint(change["data"])


def test_a_submitted_record_has_an_empty_review(world):
    author = world.enrol("warden")
    rid = create_observations(author, 1, at=IN_LEIGH)[0]
    author.pull_all()
    assert author.store[("observation", rid)]["review"] == {"state": "submitted", "note": "", "reviewed_at": None}


# --- cursors the server cannot serve ------------------------------------------------------

def test_tampered_cursor_is_resync_required(world):
    create_observations(world.enrol("warden2"), 1)
    reader = world.enrol("warden")
    reader.pull_all()
    token = reader.cursor
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    for bad in (flipped, token[:20], "not-a-cursor!", token + "x"):
        body = reader.pull(cursor=bad, expect=410)
        assert body["code"] == "resync_required", bad


def test_cursor_of_another_device_is_resync_required(world):
    first, second = world.enrol("warden"), world.enrol("warden")
    first.pull_all()
    body = second.pull(cursor=first.cursor, expect=410)
    assert body["code"] == "resync_required"
    other_user = world.enrol("warden2")
    assert other_user.pull(cursor=first.cursor, expect=410)["code"] == "resync_required"


def test_pull_limit_is_validated(world):
    reader = world.enrol("warden")
    for bad in ("0", "-1", "abc", str(settings.SYNC_PULL_MAX_LIMIT + 1)):
        response = reader.client.get(f"/api/v1/sync/pull?limit={bad}", **reader.auth)
        assert response.status_code == 400, bad


def test_pull_sends_own_writes_with_server_time(world):
    handheld = world.enrol("warden")
    rid = str(uuid.uuid4())
    handheld.push_one(mutation("observation", "create", rid, observation_data()))
    page = handheld.pull()
    assert "server_time" in page
    assert [c["id"] for c in page["changes"]] == [rid]


def test_a_pull_that_hands_over_personal_fields_logs_a_consultation_and_one_without_logs_none(world):
    import uuid as _uuid

    from warden_app.models import AccessLogEntry

    from .conftest import mutation as _mutation
    from .conftest import observation_data as _observation_data

    author = world.enrol("warden")
    record_id = _uuid.uuid4()
    author.push_one(_mutation("observation", "create", record_id, _observation_data()))
    before = AccessLogEntry.objects.filter(action="consultation").count()

    colleague = world.enrol("warden2")  # same organisation: sees the persons involved
    colleague.pull_all()
    rows = AccessLogEntry.objects.filter(action="consultation", record_ids__contains=[record_id])
    assert rows.count() == 1
    assert rows.get().actor == world.users["warden2"]

    police = world.enrol("pcso")  # another organisation: personal fields withheld
    police.pull_all()
    assert police.store[("observation", str(record_id))]["data"].get("persons_involved") is None
    assert AccessLogEntry.objects.filter(action="consultation").count() == before + 1
