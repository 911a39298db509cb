"""GET /api/v1/records/<type>: who may read, what the filters select, what is redacted,
and the s.62 consultation row of every page that returns personal fields."""
from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from tests.error_shape import assert_error_body
from tests.sync.conftest import IN_LEIGH

from .conftest import PERSONAL, basic, last_log_id, reads_logged

URL = "/api/v1/records/observation"


def get(world, username, url=URL, **params):
    return world.client(username).get(url, params)


def ids(response) -> set[str]:
    return {r["id"] for r in response.json()["results"]}


# --- who -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("username", "status"), [
    ("analyst", 200), ("supervisor_leigh", 200), ("admin", 200),
    ("warden_leigh", 403), ("pcso_leigh", 403), ("warden_wigan", 403), ("partner_fire", 403), ("dpo", 403),
])
def test_only_analysts_supervisors_and_admins_read_records(world, username, status):
    assert get(world, username).status_code == status


def test_anonymous_is_asked_for_basic_credentials(world):
    response = get(world, None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")


def test_wrong_password_is_refused(world):
    response = world.client(None).get(URL, HTTP_AUTHORIZATION=basic("analyst")["HTTP_AUTHORIZATION"][:-4] + "AAAA")
    assert response.status_code == 401


def test_session_login_works_too(world):
    client = world.client(None)
    assert client.login(username="analyst", password="fieldsync-demo")
    assert client.get(URL).status_code == 200


# --- scope -----------------------------------------------------------------------------------

def test_analyst_sees_every_area_but_not_records_outside_them(world):
    r = world.records
    assert ids(get(world, "analyst")) == {r["council_leigh"], r["council_leigh_east"], r["police_leigh"],
                                          r["council_wigan"]}


def test_supervisor_sees_their_area_and_their_team_out_of_area(world):
    r = world.records
    assert ids(get(world, "supervisor_leigh")) == {r["council_leigh"], r["council_leigh_east"], r["police_leigh"],
                                                   r["council_outside"]}


def test_admin_sees_everything(world):
    assert len(ids(get(world, "admin"))) == 5


# --- filters ---------------------------------------------------------------------------------

def test_rejected_records_are_left_out_unless_asked_for(world):
    rejected = world.records["rejected"]
    assert rejected not in ids(get(world, "analyst"))
    assert rejected in ids(get(world, "analyst", include_rejected="true"))
    assert ids(get(world, "analyst", review_state="rejected")) == {rejected}


@pytest.mark.parametrize(("params", "labels"), [
    ({"qualifier": "personal"}, {"council_leigh"}),
    ({"qualifier": "nuisance,environmental"}, {"council_leigh_east", "police_leigh", "council_wigan"}),
    ({"incident_type": "noise"}, {"police_leigh"}),
    ({"organisation": "greater-manchester-police"}, {"police_leigh"}),
    ({"review_state": "submitted"}, {"council_leigh", "council_leigh_east", "police_leigh", "council_wigan"}),
    # 100 m around the first Leigh point: not the one 200 m east.
    ({"bbox": f"{IN_LEIGH[0] - 0.001},{IN_LEIGH[1] - 0.001},{IN_LEIGH[0] + 0.001},{IN_LEIGH[1] + 0.001}"},
     {"council_leigh", "police_leigh"}),
])
def test_filters(world, params, labels):
    assert ids(get(world, "analyst", **params)) == {world.records[label] for label in labels}


def test_area_filter_takes_area_ids(world):
    leigh = world.demo.areas["LEIGH-TC"].pk
    wigan = world.demo.areas["WIGAN-TC"].pk
    assert ids(get(world, "analyst", area=str(wigan))) == {world.records["council_wigan"]}
    assert len(ids(get(world, "analyst", area=f"{leigh},{wigan}"))) == 4


def test_time_range_filter_is_half_open(world):
    now = timezone.now()
    two_and_a_half_hours_ago = (now - timedelta(hours=2, minutes=30)).isoformat()
    got = ids(get(world, "analyst", **{"to": two_and_a_half_hours_ago}))
    assert got == {world.records["council_leigh"]}  # observed three hours ago
    got = ids(get(world, "analyst", **{"from": two_and_a_half_hours_ago}))
    assert world.records["council_leigh"] not in got and world.records["council_leigh_east"] in got


SQUARE_WKT = (
    f"POLYGON(({IN_LEIGH[0] - 0.001} {IN_LEIGH[1] - 0.001}, {IN_LEIGH[0] + 0.001} {IN_LEIGH[1] - 0.001}, "
    f"{IN_LEIGH[0] + 0.001} {IN_LEIGH[1] + 0.001}, {IN_LEIGH[0] - 0.001} {IN_LEIGH[1] + 0.001}, "
    f"{IN_LEIGH[0] - 0.001} {IN_LEIGH[1] - 0.001}))"
)


def test_polygon_as_wkt_in_the_query_string(world):
    assert ids(get(world, "analyst", polygon=SQUARE_WKT)) == {world.records["council_leigh"],
                                                               world.records["police_leigh"]}


def test_polygon_as_geojson_posted(world):
    x, y = IN_LEIGH
    polygon = {"type": "Polygon", "coordinates": [[[x - 0.001, y - 0.001], [x + 0.001, y - 0.001],
                                                   [x + 0.001, y + 0.001], [x - 0.001, y + 0.001],
                                                   [x - 0.001, y - 0.001]]],
               "crs": {"type": "name", "properties": {"name": "file:///etc/passwd"}}}
    response = world.client("analyst").post(URL, json.dumps({"polygon": polygon, "incident_type": "noise"}),
                                            content_type="application/json")
    assert response.status_code == 200, response.content
    assert ids(response) == {world.records["police_leigh"]}


@pytest.mark.parametrize(("params", "field"), [
    ({"qualifier": "shouting"}, "qualifier"),
    ({"issue_type": "litter"}, "issue_type"),  # not a filter of observations
    ({"bbox": "1,2,3"}, "bbox"),
    ({"bbox": "10,60,5,50"}, "bbox"),
    ({"from": "yesterday"}, "from"),
    ({"to": "9999-12-31"}, "to"),  # the whole last day would end in year 10000
    ({"polygon": "POINT(1 2)"}, "polygon"),
    ({"polygon": "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))"}, "polygon"),  # self-intersecting
    ({"polygon": "SRID=27700;POLYGON((0 0, 1 0, 1 1, 0 0))"}, "polygon"),
    ({"area": "leigh"}, "area"),
    ({"limit": "0"}, "limit"),
    ({"after": "not-a-uuid"}, "after"),
    ({"format": "shp"}, "format"),
    ({"qualifer": "personal"}, "qualifer"),  # a misspelt filter must not select everything
])
def test_bad_parameters_are_refused_naming_the_parameter(world, params, field):
    response = get(world, "analyst", **params)
    assert response.status_code == 400, response.content
    body = assert_error_body(response.json(), "invalid")
    assert field in body["fields"], body


def test_unknown_record_type_is_404(world):
    assert get(world, "analyst", "/api/v1/records/person").status_code == 404


# --- pages -----------------------------------------------------------------------------------

def test_pages_follow_next_until_every_record_is_seen_once(world):
    seen, url, params = [], URL, {"limit": "2", "include_rejected": "true"}
    for _ in range(10):
        body = world.client("analyst").get(url, params).json()
        seen += [r["id"] for r in body["results"]]
        assert body["count"] == len(body["results"]) <= 2
        if not body["next"]:
            break
        parts = urlsplit(body["next"])
        url, params = parts.path + "?" + parts.query, {}
    assert len(seen) == len(set(seen)) == 5


def test_items_carry_their_audit_and_its_review_state(world):
    body = get(world, "analyst", "/api/v1/records/audit_item").json()
    by_id = {r["id"]: r for r in body["results"]}
    litter = by_id[world.records["litter"]]
    assert litter["street_audit"] == world.records["audit"]
    assert litter["issue_type"] == "litter" and litter["grade"] == "C"
    assert litter["review_state"] == "submitted"
    assert litter["location"]["type"] == "Point"
    assert ids(get(world, "analyst", "/api/v1/records/audit_item", issue_type="fly_tipping")) == {
        world.records["fly_tipping"]}


# --- redaction and the consultation log -------------------------------------------------------

def test_analyst_without_grant_sees_no_personal_fields_and_nothing_is_logged(world):
    before = last_log_id()
    body = get(world, "analyst").json()
    for record in body["results"]:
        assert all(record[name] is None for name in PERSONAL), record
        assert record["redacted"] == list(PERSONAL)
        assert record["incident_type"] and record["location"]["type"] == "Point"
    assert reads_logged(before) == []


def test_street_audits_have_no_personal_fields_so_reading_them_logs_nothing(world):
    before = last_log_id()
    assert get(world, "admin", "/api/v1/records/street_audit").status_code == 200
    assert get(world, "admin", "/api/v1/records/audit_item").status_code == 200
    assert reads_logged(before) == []


def test_supervisor_sees_personal_fields_of_what_they_review_and_the_page_is_logged(world):
    before = last_log_id()
    body = get(world, "supervisor_leigh").json()
    by_id = {r["id"]: r for r in body["results"]}
    assert by_id[world.records["police_leigh"]]["persons_involved"] == [{"description": "driver, 20s"}]
    assert by_id[world.records["council_leigh"]]["description"] == "Two youths shouting at a woman"
    assert by_id[world.records["council_leigh"]]["redacted"] == []
    [row] = reads_logged(before)
    assert row.action == "consultation" and row.actor == world.users["supervisor_leigh"]
    assert row.record_type == "observation"
    assert {str(i) for i in row.record_ids} == set(by_id)
    assert row.details["view"] == "api.records.list" and row.details["fields"] == list(PERSONAL)
    assert row.purpose


def test_a_purpose_grant_opens_named_fields_to_the_analyst_and_names_its_purpose(world):
    from warden_app.services.sharing import purpose_grant_issue

    grant = purpose_grant_issue(granted_by=world.users["admin"], user=world.users["analyst"],
                                record_type="observation", fields=["persons_involved"],
                                purpose="Problem-solving meeting on Leigh street drinking, case 42",
                                valid_until=timezone.now() + timedelta(days=7))
    before = last_log_id()
    body = get(world, "analyst").json()
    for record in body["results"]:
        assert record["description"] is None and record["photos"] is None
        assert record["redacted"] == ["description", "photos"]
    by_id = {r["id"]: r for r in body["results"]}
    assert by_id[world.records["police_leigh"]]["persons_involved"] == [{"description": "driver, 20s"}]
    [row] = reads_logged(before)
    assert row.action == "consultation" and row.purpose == grant.purpose
    assert row.details["grants"] == [grant.pk] and row.details["fields"] == ["persons_involved"]
    assert {str(i) for i in row.record_ids} == set(by_id)


def test_an_expired_or_revoked_grant_opens_nothing(world):
    from warden_app.services.sharing import purpose_grant_issue, purpose_grant_revoke

    now = timezone.now()
    purpose_grant_issue(granted_by=world.users["admin"], user=world.users["analyst"], record_type="observation",
                        fields=["description"], purpose="last month's review", valid_from=now - timedelta(days=30),
                        valid_until=now - timedelta(days=1))
    grant = purpose_grant_issue(granted_by=world.users["admin"], user=world.users["analyst"],
                                record_type="observation", fields=["description"], purpose="today",
                                valid_until=now + timedelta(days=1))
    purpose_grant_revoke(grant=grant, revoked_by=world.users["admin"])
    before = last_log_id()
    body = get(world, "analyst").json()
    assert all(r["description"] is None for r in body["results"])
    assert reads_logged(before) == []


def test_detail_is_scoped_redacted_and_logged(world):
    record = world.records["council_wigan"]
    assert get(world, "supervisor_leigh", f"{URL}/{record}").status_code == 404  # not their area
    before = last_log_id()
    body = get(world, "analyst", f"{URL}/{record}").json()
    assert body["id"] == record and body["description"] is None
    assert reads_logged(before) == []
    body = get(world, "admin", f"{URL}/{record}").json()
    assert body["description"] == "Needles behind the bus shelter"
    [row] = reads_logged(before)
    assert row.action == "consultation" and [str(i) for i in row.record_ids] == [record]
    assert row.details["view"] == "api.records.detail"


def test_a_date_bound_means_the_whole_day():
    """`to=2026-11-24` ends at the start of the 25th (the day is included); `from` starts at
    the day's start; an OGC date-only `datetime` is the whole day, in the partnership's zone."""
    from datetime import datetime, timedelta

    from django.utils import timezone

    from fieldsync.parsing import when
    from warden_app.analysis.filters import datetime_interval_parse

    day_start = timezone.make_aware(datetime(2026, 11, 24))
    next_day = timezone.make_aware(datetime(2026, 11, 25))
    assert when("from", "2026-11-24") == day_start
    assert when("to", "2026-11-24", end=True) == next_day
    assert datetime_interval_parse("2026-11-24") == (day_start, next_day)
    assert datetime_interval_parse("../2026-11-24") == (None, next_day)
    instant = when("to", "2026-11-24T10:00:00Z", end=True)
    assert datetime_interval_parse("../2026-11-24T10:00:00Z") == (None, instant + timedelta(microseconds=1))
