"""The partner dashboard shows the aggregates selectors' partner figures and nothing more:
the same suppressed and rounded counts, no small count anywhere in the page, closed periods
only, fixed choices (anything else is a 400 page), the door closed to roles without aggregates."""
from __future__ import annotations

import itertools
from datetime import datetime

import pytest
from django.test import Client

from tests.aggregates.support import FINE, LONDON, Q3_COUNTS, get_json
from warden_app.aggregates import params as aggregate_params
from warden_app.aggregates import selectors
from warden_app.aggregates.disclosure import period_parse

from .support import PAGE, DashboardPage, numbers_outside_coordinates, standalone

# Q3 2026 closed on 1 October, and is served from the 8th (seven settling days).
AFTER_Q3 = datetime(2026, 10, 20, 12, 0, tzinfo=LONDON)


@pytest.fixture
def after_q3(monkeypatch):
    """The clock the aggregates API and the page both read (django.utils.timezone.now)."""
    monkeypatch.setattr(aggregate_params.timezone, "now", lambda: AFTER_Q3)
    return AFTER_Q3


def page_of(client: Client, query: dict | None = None, expect: int = 200):
    response = client.get(PAGE, query or {})
    assert response.status_code == expect, (query, response.status_code, response.content[:400])
    return response


def selector_counts(slug: str, period: str, record_type: str = "observation") -> dict[str, int | None]:
    from warden_app.models import BoundarySet

    family = [s.pk for s in aggregate_params.boundary_sets_for_partners()]
    rows = selectors.partner_counts(
        boundary_set=BoundarySet.objects.get(slug=slug), family_set_ids=family,
        record_type=record_type, period=period_parse(period),
    )
    return {row.area.code: (None if row.suppressed else row.count) for row in rows}


def true_july_counts() -> dict[str, int]:
    return {code: months[0] for code, months in Q3_COUNTS.items()}


# --- the figures ---------------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["lsoa", "ward", "partnership-areas"])
@pytest.mark.parametrize("period", ["2026-07", "2026-08", "2026-09", "2026-Q3"])
def test_the_page_shows_exactly_the_partner_figures_of_the_selectors(q3, after_q3, slug, period):
    client = q3.client("partner_fire")
    page = DashboardPage(page_of(client, {"boundary_set": slug, "period": period}).content.decode())
    expected = selector_counts(slug, period)

    # The maps' data: one feature per area, the selectors' value, null when withheld.
    features = page.json["partner-data"]["areas"]["features"]
    assert {f["properties"]["code"]: f["properties"]["count"] for f in features} == expected
    for feature in features:
        withheld = feature["properties"]["count"] is None
        assert (feature["properties"]["band"] is None) == withheld
        if withheld:
            assert feature["properties"]["hotspot"] is None

    # The table: the same figures, by name, "withheld" for every withheld area.
    names = {area.code: area.name for (s, _), area in q3.areas.items() if s == slug}
    table = {row[0]: row[1] for row in page.body_rows}
    assert set(table) == {f"{names[code]} {code}" for code in expected}
    for code, value in expected.items():
        assert table[f"{names[code]} {code}"] == ("withheld" if value is None else str(value))

    # And the API gives the same person the same figures and the same hotspot map.
    api = get_json(client, "/api/v1/aggregates/counts", {"boundary_set": slug, "period": period})
    assert {a["code"]: a["count"] for a in api["areas"]} == expected
    hotspots = get_json(client, "/api/v1/aggregates/hotspots", {"boundary_set": slug, "period": period})
    assert page.json["partner-data"]["hotspots"]["features"] == hotspots["features"]


def test_a_small_count_never_appears_in_the_page_nor_its_data(q3, after_q3):
    """July's LSOAs: L3 has 9 records and L4 has 3 (primary), X1 none; secondary suppression
    withholds more. No withheld area's true count is in the embedded JSON as a number, and
    the small ones are nowhere in the page's words or attributes."""
    expected = selector_counts(FINE, "2026-07")
    truth = true_july_counts()
    withheld = {code for code, value in expected.items() if value is None}
    assert {"L3", "L4", "X1"} <= withheld  # the case the test is about
    published = {value for value in expected.values() if value is not None}

    html = page_of(q3.client("partner_fire"), {"boundary_set": FINE, "period": "2026-07"}).content.decode()
    page = DashboardPage(html)
    numbers = set(numbers_outside_coordinates(page.json["partner-data"]))
    assert numbers <= published, numbers - published
    for code in withheld:
        if truth[code] not in published:
            assert truth[code] not in numbers

    words = " ".join(page.outside_json)
    for small in (truth["L3"], truth["L4"]):
        assert not standalone(small, words), small
    # The probe sees numbers when they are there: the published ones are in the words.
    assert all(standalone(value, words) for value in published)
    # A withheld row holds no figure at all, only the area's name and code.
    for row in page.body_rows:
        if row[1] == "withheld":
            assert not any(ch.isdigit() for ch in row[1] + row[2])


def test_colour_bands_are_ranges_of_the_published_figures(q3, after_q3):
    response = page_of(q3.client("partner_fire"), {"boundary_set": FINE, "period": "2026-Q3"})
    page = DashboardPage(response.content.decode())
    data = page.json["partner-data"]
    by_band: dict[str, list[int]] = {}
    for feature in data["areas"]["features"]:
        if feature["properties"]["count"] is not None:
            by_band.setdefault(feature["properties"]["band"], []).append(feature["properties"]["count"])
    assert set(by_band) == set(data["bands"])
    # Bands never interleave: a larger figure never has a lighter band.
    order = sorted(by_band, key=lambda key: min(by_band[key]))
    for lighter, darker in itertools.pairwise(order):
        assert max(by_band[lighter]) < min(by_band[darker])
        assert lighter < darker  # shade-1 < shade-3: the key is the palette's index


def test_no_consultation_is_logged_like_the_aggregates_api(q3, after_q3):
    from warden_app.models import AccessLogEntry

    before = AccessLogEntry.objects.count()
    page_of(q3.client("partner_fire"), {"boundary_set": FINE, "period": "2026-08"})
    assert AccessLogEntry.objects.count() == before


# --- closed periods only ---------------------------------------------------------------------


def test_periods_offered_are_closed_ones_only(partnership, after_q3, monkeypatch):
    page = DashboardPage(page_of(partnership.client("partner_fire")).content.decode())
    offered = [value for value, _ in page.options["period"]]
    months = [f"2026-{m:02d}" for m in range(9, 0, -1)] + ["2025-12", "2025-11", "2025-10"]
    assert offered == [*months, "2026-Q3", "2026-Q2", "2026-Q1", "2025-Q4"]
    # The open month and quarter (October, Q4) are not offered; the newest closed month is shown.
    assert [value for value, selected in page.options["period"] if selected] == ["2026-09"]
    assert "October 2026 is shown from 8 November 2026" in " ".join(" ".join(page.outside_json).split())

    # One minute before September's settling days are over, it is not offered yet.
    monkeypatch.setattr(aggregate_params.timezone, "now", lambda: datetime(2026, 10, 7, 23, 59, tzinfo=LONDON))
    page = DashboardPage(page_of(partnership.client("partner_fire")).content.decode())
    offered = [value for value, _ in page.options["period"]]
    assert offered[0] == "2026-08" and "2026-09" not in offered
    assert "2026-Q3" not in offered and offered[12] == "2026-Q2"
    response = page_of(partnership.client("partner_fire"), {"period": "2026-09"}, expect=400)
    assert "September 2026 is not closed yet" in response.content.decode()


# --- nothing else can be asked -------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"polygon": "POLYGON((-2.52 53.49,-2.51 53.49,-2.51 53.50,-2.52 53.49))"}, "polygon cannot be chosen here"),
        ({"bbox": "-2.53,53.49,-2.50,53.51"}, "bbox cannot be chosen here"),
        ({"start": "2026-07-01", "end": "2026-07-15"}, "end, start cannot be chosen here"),
        ({"area": "L1"}, "area cannot be chosen here"),
        ({"areas": "L1"}, "areas cannot be chosen here"),
        ({"incident_type": "noise"}, "incident_type cannot be chosen here"),
        ({"bandwidth": "60", "cell_size": "5"}, "bandwidth, cell_size cannot be chosen here"),
        ({"format": "json"}, "format cannot be chosen here"),
        ({"<script>alert(1)</script>": "x"}, "&lt;script&gt;alert(1)&lt;/script&gt; cannot be chosen here"),
        ({"": "x"}, "(a parameter without a name) cannot be chosen here"),
        ({"boundary_set": "nope"}, "not one of those published to partners"),
        ({"boundary_set": "lsoa", "period": "2026-10"}, "October 2026 is not closed yet"),
        ({"period": "2026-Q4"}, "October to December 2026 is not closed yet"),
        ({"period": "2099-01"}, "January 2099 is not closed yet"),
        ({"period": "2024-01"}, "not one of the months or quarters on the list"),
        ({"period": "2026-7"}, "not one of the months or quarters on the list"),
        ({"period": "2026-07\x00"}, "not one of the months or quarters on the list"),
        ({"record_type": "person"}, "That kind of record is not one of those on the list"),
        ({"boundary_set": ["lsoa", "ward"]}, "Choose one boundary set, not several"),
        ({"period": ["2026-07", "2026-08"]}, "Choose one period, not several"),
    ],
)
def test_a_hand_crafted_query_string_is_refused_with_a_400_page(q3, after_q3, query, words):
    response = page_of(q3.client("partner_fire"), {"boundary_set": FINE, "period": "2026-07", **query}, expect=400)
    html = response.content.decode()
    assert "The partner dashboard cannot show that" in html
    assert words in html
    assert 'id="partner-data"' not in html and "<script>alert" not in html
    assert next(t.name for t in response.templates) == "partner_dashboard/refused.html"


def test_blank_choices_take_the_defaults(q3, after_q3):
    page = DashboardPage(page_of(q3.client("partner_fire"), {"boundary_set": "", "period": ""}).content.decode())
    assert [v for v, selected in page.options["boundary_set"] if selected] == ["partnership-areas"]
    assert [v for v, selected in page.options["period"] if selected] == ["2026-09"]
    assert [v for v, selected in page.options["record_type"] if selected] == ["observation"]


@pytest.mark.parametrize("record_type", ["street_audit", "audit_item"])
def test_every_record_type_of_the_list_is_shown(q3, after_q3, record_type):
    page = DashboardPage(page_of(
        q3.client("partner_fire"), {"boundary_set": FINE, "period": "2026-07", "record_type": record_type}
    ).content.decode())
    features = page.json["partner-data"]["areas"]["features"]
    assert {f["properties"]["code"]: f["properties"]["count"] for f in features} == selector_counts(
        FINE, "2026-07", record_type
    )


def test_only_the_boundary_sets_published_to_partners_are_offered(q3, after_q3, settings):
    settings.DISCLOSURE_PARTNER_BOUNDARY_SETS = ["lsoa", "ward"]
    client = q3.client("partner_fire")
    page = DashboardPage(page_of(client).content.decode())
    assert [v for v, _ in page.options["boundary_set"]] == ["lsoa", "ward"]  # by name: LSOA, WARD
    response = page_of(client, {"boundary_set": "partnership-areas"}, expect=400)
    assert "not one of those published to partners" in response.content.decode()


# --- who ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("username", ["warden_leigh", "pcso_leigh", "dpo"])
def test_roles_without_aggregates_get_the_403_page(partnership, after_q3, username):
    response = page_of(partnership.client(username), {"boundary_set": FINE, "period": "2026-07"}, expect=403)
    html = response.content.decode()
    assert "Partner dashboard is not open to you" in html
    assert "front_door/door_closed.html" in [t.name for t in response.templates]
    assert 'id="partner-data"' not in html


def test_anonymous_visitors_are_sent_to_sign_in(partnership):
    response = Client().get(PAGE, {"period": "2026-07"})
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("username", ["analyst", "supervisor_leigh", "admin"])
def test_people_inside_the_partnership_see_the_partner_figures(q3, after_q3, username):
    html = page_of(q3.client(username), {"boundary_set": FINE, "period": "2026-07"}).content.decode()
    page = DashboardPage(html)
    features = page.json["partner-data"]["areas"]["features"]
    assert {f["properties"]["code"]: f["properties"]["count"] for f in features} == selector_counts(FINE, "2026-07")
    assert "this page shows exactly what partner viewers" in " ".join(html.split())


def test_a_partner_viewer_is_not_told_they_are_inside(q3, after_q3):
    html = page_of(q3.client("partner_fire")).content.decode()
    assert "You are inside the partnership" not in html
