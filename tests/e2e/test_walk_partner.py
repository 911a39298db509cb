"""The partner viewer's walk in Chromium, at 360 and 1366 px: the dashboard with both maps and
the table, another boundary set and period chosen from the lists, and a hand-made query
string refused; nothing leaves 127.0.0.1, no console error, nothing wider than the window."""
import uuid
from datetime import timedelta

import pytest
from django.contrib.gis.geos import MultiPolygon, Point, Polygon
from django.utils import timezone

from tests.e2e.walk import walker
from tests.sync.conftest import LEIGH_BOX, LEIGH_WEST_BOX, PASSWORD, WIGAN_BOX

pytestmark = [pytest.mark.e2e]

# Records per operational area in the newest closed month and the one before (LEIGH_WEST's 3
# is below the threshold: withheld, and so is the ward holding it).
COUNTS = {"leigh": (26, 31), "leigh_west": (3, 14), "wigan": (18, 42)}


def centre(box):
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def partner_records(world):
    """A second, imported boundary set (wards tiling the operational areas) and observations
    clustered in each area in the two newest closed months."""
    from warden_app.models import Area, BoundarySet, Observation
    from warden_app.partner_dashboard.choices import closed_months

    wards = BoundarySet.objects.create(name="Wards", slug="wards")
    Area.objects.create(boundary_set=wards, name="Leigh and Westleigh", code="E05000001", geom=MultiPolygon(
        Polygon.from_bbox((LEIGH_WEST_BOX[0], LEIGH_BOX[1], LEIGH_BOX[2], LEIGH_BOX[3])), srid=4326))
    Area.objects.create(boundary_set=wards, name="Wigan Central", code="E05000002",
                        geom=MultiPolygon(Polygon.from_bbox(WIGAN_BOX), srid=4326))
    months = closed_months(timezone.now())[:2]
    boxes = {"leigh": LEIGH_BOX, "leigh_west": LEIGH_WEST_BOX, "wigan": WIGAN_BOX}
    author = world.users["warden"]
    rows = []
    for name, per_month in COUNTS.items():
        x, y = centre(boxes[name])
        for period, n in zip(months, per_month, strict=True):
            for k in range(n):
                when = period.start + timedelta(days=k % 25, hours=8 + k % 10)
                where = Point(x + ((k * 37) % 11 - 5) * 0.00021, y + ((k * 53) % 9 - 4) * 0.00017, srid=4326)
                rows.append(Observation(
                    id=uuid.uuid4(), author=author, organisation=author.organisation,
                    form=world.forms["observation"], created_at=when, updated_at=when, location=where,
                    qualifier="nuisance", incident_type="street_drinking", observed_at=when,
                ))
    Observation.objects.bulk_create(rows)
    return months


def maps_rendered(page):
    """Both maps drew their areas (SVG paths), the hotspot map its cells too."""
    page.wait_for_selector("#counts-map path.leaflet-interactive")
    counts = page.locator("#counts-map path").count()
    hotspots = page.locator("#hotspot-map path").count()
    return counts, hotspots


@pytest.mark.parametrize("width", ["phone", "laptop"])
def test_a_partner_switches_boundary_set_and_period_and_sees_maps_and_table(live_server, world, browser, width):
    months = partner_records(world)
    with walker(browser, live_server.url, "partner", width) as walk:
        walk.sign_in("partner", PASSWORD)
        walk.page.get_by_role("link", name="Partner dashboard").first.click()
        walk.page.wait_for_url(live_server.url + "/partner/")
        page = walk.page
        assert page.locator("h1").inner_text() == "Partner dashboard"
        assert page.locator("select[name=period] option:checked").get_attribute("value") == months[0].label
        counts, hotspots = maps_rendered(page)
        assert counts == 3 and hotspots > 3  # the three areas; then hotspot cells over the outlines
        rows = page.locator(".partner-table tbody tr")
        assert rows.count() == 3
        assert "withheld" in page.locator(".partner-table tr", has_text="Leigh_West").inner_text()
        assert page.locator(".legend .swatch.withheld").count() == 2
        walk.no_overflow()
        walk.shot("dashboard")

        page.select_option("select[name=boundary_set]", "wards")
        page.select_option("select[name=period]", months[1].label)
        page.get_by_role("button", name="Show").click()
        page.wait_for_url(lambda url: url.endswith(
            f"/partner/?boundary_set=wards&period={months[1].label}&record_type=observation"))
        assert "in Wards," in page.locator("h2#figures").inner_text()
        counts, hotspots = maps_rendered(page)
        assert counts == 2 and hotspots > 2
        table = page.locator(".partner-table tbody").inner_text()
        assert "Leigh and Westleigh" in table and "Wigan Central" in table
        assert "E05000001" in table  # the code beside the name, not instead of it
        # The table's name shows the area on the maps.
        page.get_by_role("button", name="Wigan Central").click()
        walk.no_overflow()
        walk.shot("wards")

        walk.go("/partner/?boundary_set=wards&polygon=POLYGON((0%200,1%200,1%201,0%200))", status=400)
        assert page.locator("h1").inner_text() == "The partner dashboard cannot show that"
        assert "polygon cannot be chosen here" in page.locator(".errors").inner_text()
        walk.no_overflow()
        walk.shot("refused")
        walk.assert_clean()
