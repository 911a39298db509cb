"""Who may ask for aggregates, and what partners may not ask for."""
from __future__ import annotations

from datetime import datetime

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from tests.error_shape import assert_error_body
from warden_app.aggregates import params as params_module

from .support import LONDON, get_json

COUNTS = "/api/v1/aggregates/counts"
HOTSPOTS = "/api/v1/aggregates/hotspots"
SETS = "/api/v1/aggregates/boundary-sets"
PARTNER_OK = {"boundary_set": "lsoa", "period": "2026-07"}


def assert_error(body: dict, code: str) -> None:
    assert set(body) == {"code", "message", "fields"}, body
    assert_error_body(body, code)


@pytest.mark.parametrize("username", ["warden_leigh", "warden_wigan", "pcso_leigh", "dpo"])
@pytest.mark.parametrize("path", [COUNTS, HOTSPOTS, SETS])
def test_field_staff_and_the_dpo_get_no_aggregates(partnership, username, path):
    body = get_json(partnership.client(username), path, PARTNER_OK, expect=403)
    assert_error(body, "permission_denied")


@pytest.mark.parametrize("path", [COUNTS, HOTSPOTS, SETS])
def test_anonymous_callers_are_refused(partnership, path):
    response = Client().get(path, PARTNER_OK)
    assert response.status_code in (401, 403)
    assert_error(response.json(), "not_authenticated")


@pytest.mark.parametrize("username", ["analyst", "supervisor_leigh", "admin", "partner_fire"])
@pytest.mark.parametrize("path", [COUNTS, HOTSPOTS, SETS])
def test_analysts_supervisors_admins_and_partners_may_ask(partnership, username, path):
    get_json(partnership.client(username), path, PARTNER_OK)


def test_basic_authentication_works_for_desktop_tools(partnership):
    user = partnership.users["partner_fire"]
    user.set_password("a-long-partner-password-1")
    user.save()
    import base64

    token = base64.b64encode(b"partner_fire:a-long-partner-password-1").decode()
    response = Client().get(COUNTS, PARTNER_OK, HTTP_AUTHORIZATION=f"Basic {token}")
    assert response.status_code == 200


@pytest.mark.parametrize(
    "extra",
    [
        {"bbox": "-2.53,53.49,-2.50,53.51"},
        {"start": "2026-07-01"},
        {"end": "2026-07-15"},
        {"incident_type": "noise"},
        {"areas": "L1"},
        {"area": "L1"},
        {"bandwidth": "200"},
        {"cell_size": "25"},
        {"qualifier": "personal"},
        {"format": "json"},
        {"limit": "1"},
    ],
)
@pytest.mark.parametrize("path", [COUNTS, HOTSPOTS])
def test_partners_may_not_use_free_filters(partnership, path, extra):
    body = get_json(partnership.client("partner_fire"), path, {**PARTNER_OK, **extra}, expect=400)
    assert_error(body, "filter_not_allowed")
    assert set(body["fields"]) == set(extra)
    assert body["fields"][next(iter(extra))][0]["code"] == "not_allowed"


@pytest.mark.parametrize(
    ("params", "field", "code"),
    [
        ({"period": "2026-07"}, "boundary_set", "required"),
        ({"boundary_set": "lsoa"}, "period", "required"),
        ({"boundary_set": "lsoa", "period": "2026-7"}, "period", "invalid_period"),
        ({"boundary_set": "lsoa", "period": "2026-13"}, "period", "invalid_period"),
        ({"boundary_set": "lsoa", "period": "2026-Q5"}, "period", "invalid_period"),
        ({"boundary_set": "lsoa", "period": "2026-07-01"}, "period", "invalid_period"),
        ({"boundary_set": "lsoa", "period": "last month"}, "period", "invalid_period"),
        ({"boundary_set": "nope", "period": "2026-07"}, "boundary_set", "unknown_boundary_set"),
        ({"boundary_set": "lsoa", "period": ["2026-07", "2026-08"]}, "period", "repeated"),
        ({"boundary_set": ["lsoa", "ward"], "period": "2026-07"}, "boundary_set", "repeated"),
        ({**PARTNER_OK, "record_type": "person"}, "record_type", "not_in_choices"),
    ],
)
def test_partner_requests_name_one_whole_set_and_one_whole_period(partnership, params, field, code):
    for path in (COUNTS, HOTSPOTS):
        body = get_json(partnership.client("partner_fire"), path, params, expect=400)
        assert_error(body, "invalid")
        assert body["fields"][field][0]["code"] == code


def test_partners_get_closed_periods_only_after_the_settling_days(partnership, monkeypatch):
    partner = partnership.client("partner_fire")
    now = timezone.localtime()
    this_month = f"{now.year}-{now.month:02d}"
    this_quarter = f"{now.year}-Q{(now.month - 1) // 3 + 1}"
    for period in (this_month, this_quarter, f"{now.year + 1}-01"):
        assert_error(get_json(partner, COUNTS, {"boundary_set": "lsoa", "period": period}, expect=400),
                     "period_not_closed")
    # October 2026 ends at midnight on 1 November; with 7 settling days it opens on the 8th.
    monkeypatch.setattr(params_module.timezone, "now", lambda: datetime(2026, 11, 7, 23, 59, tzinfo=LONDON))
    body = get_json(partner, HOTSPOTS, {"boundary_set": "lsoa", "period": "2026-10"}, expect=400)
    assert_error(body, "period_not_closed")
    assert body["fields"]["period"][0]["code"] == "period_not_closed"
    monkeypatch.setattr(params_module.timezone, "now", lambda: datetime(2026, 11, 8, 0, 0, tzinfo=LONDON))
    get_json(partner, HOTSPOTS, {"boundary_set": "lsoa", "period": "2026-10"})
    with override_settings(DISCLOSURE_SETTLE_DAYS=0):
        monkeypatch.setattr(params_module.timezone, "now", lambda: datetime(2026, 11, 1, 0, 0, tzinfo=LONDON))
        get_json(partner, COUNTS, {"boundary_set": "lsoa", "period": "2026-10"})
        # …and a quarter only when its last month is over.
        assert_error(get_json(partner, COUNTS, {"boundary_set": "lsoa", "period": "2026-Q4"}, expect=400),
                     "period_not_closed")


def test_the_partner_family_of_boundary_sets_is_a_setting(partnership):
    partner = partnership.client("partner_fire")
    assert {s["slug"] for s in get_json(partner, SETS)["boundary_sets"]} == {"partnership-areas", "lsoa", "ward"}
    with override_settings(DISCLOSURE_PARTNER_BOUNDARY_SETS=["lsoa"]):
        assert [s["slug"] for s in get_json(partner, SETS)["boundary_sets"]] == ["lsoa"]
        get_json(partner, COUNTS, PARTNER_OK)
        body = get_json(partner, COUNTS, {"boundary_set": "ward", "period": "2026-07"}, expect=400)
        assert body["fields"]["boundary_set"][0]["code"] == "unknown_boundary_set"
        # Inside the partnership every set stays available.
        analyst_sets = get_json(partnership.client("analyst"), SETS)["boundary_sets"]
        assert {s["slug"] for s in analyst_sets} == {"partnership-areas", "lsoa", "ward"}


@pytest.mark.parametrize(
    ("path", "params", "field", "code"),
    [
        (COUNTS, {"bbox": "1,2,3,4"}, "bbox", "unknown_parameter"),
        (COUNTS, {"bandwidth": "200"}, "bandwidth", "unknown_parameter"),
        (COUNTS, {"record_type": "street_audit", "incident_type": "noise"}, "incident_type", "not_applicable"),
        (COUNTS, {"incident_type": "joyriding"}, "incident_type", "not_in_choices"),
        (COUNTS, {"period": "2026-07", "start": "2026-07-01"}, "period", "conflict"),
        (COUNTS, {"start": "2026-08-01", "end": "2026-07-01"}, "end", "before_start"),
        (COUNTS, {"start": "yesterday"}, "start", "invalid_datetime"),
        (COUNTS, {"boundary_set": "lsoa", "areas": "L1,NOPE"}, "areas", "unknown_area"),
        (HOTSPOTS, {"bandwidth": "10"}, "bandwidth", "out_of_range"),
        (HOTSPOTS, {"bandwidth": "wide"}, "bandwidth", "out_of_range"),
        (HOTSPOTS, {"cell_size": "1"}, "cell_size", "out_of_range"),
        (HOTSPOTS, {"bandwidth": "5000", "cell_size": "5"}, "cell_size", "too_fine"),
        (HOTSPOTS, {"boundary_set": "ward", "cell_size": "5", "bandwidth": "100"}, "cell_size", "too_fine"),
    ],
)
def test_internal_parameters_are_checked(partnership, path, params, field, code):
    if field == "cell_size" and params.get("boundary_set") == "ward":
        # ~1.4 km² of wards at 5 m cells is under the cap; make the region large enough.
        from django.contrib.gis.geos import MultiPolygon, Polygon

        from warden_app.models import Area

        Area.objects.create(boundary_set=partnership.sets["ward"], name="Big", code="BIG",
                            geom=MultiPolygon(Polygon.from_bbox((-2.7, 53.4, -2.4, 53.6)), srid=4326))
    body = get_json(partnership.client("analyst"), path, params, expect=400)
    assert_error(body, "invalid")
    assert body["fields"][field][0]["code"] == code
