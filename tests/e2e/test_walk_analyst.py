"""The analyst's walk in Chromium, at 360 and 1366 px: the map of records with its list, a
shape drawn on the map narrowing both, a record page with its withheld fields, how to connect
QGIS and GDAL with a token made (and shown once), a purpose-grant request sent, and the
records downloaded (CSV at once, Excel prepared in the background and fetched); nothing
leaves 127.0.0.1, no console error, nothing wider than the window."""
import io
import re
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.gis.geos import Point
from django.utils import timezone
from openpyxl import load_workbook

from tests.e2e.walk import walker
from tests.sync.conftest import LEIGH_BOX, PASSWORD, WIGAN_BOX

pytestmark = [pytest.mark.e2e]

KINDS = (("personal", "rowdy_inconsiderate"), ("nuisance", "street_drinking"), ("nuisance", "noise"),
         ("environmental", "littering_drugs_paraphernalia"), ("nuisance", "vehicle_nuisance"))


def analyst_records(world) -> int:
    """Observations spread over Leigh and Wigan in the last weeks, of several kinds."""
    from warden_app.models import Observation

    author = world.users["warden"]
    now = timezone.now()
    rows = []
    for box, n in ((LEIGH_BOX, 24), (WIGAN_BOX, 14)):
        x0, y0, x1, y1 = box
        for k in range(n):
            when = now - timedelta(days=k % 20, hours=k % 7)
            where = Point(x0 + (x1 - x0) * ((k * 37) % 19 + 1) / 21, y0 + (y1 - y0) * ((k * 53) % 17 + 1) / 19,
                          srid=4326)
            qualifier, incident = KINDS[k % len(KINDS)]
            rows.append(Observation(
                id=uuid.uuid4(), author=author, organisation=author.organisation, form=world.forms["observation"],
                created_at=when, updated_at=when, location=where, qualifier=qualifier, incident_type=incident,
                observed_at=when, description="Group gathered by the shops", review_state="submitted",
            ))
    Observation.objects.bulk_create(rows)
    return len(rows)


@pytest.mark.parametrize("width", ["phone", "laptop"])
def test_an_analyst_maps_filters_reads_connects_and_asks(live_server, world, browser, width):
    from warden_app.models import Export
    from warden_app.tasks import export_build_task

    total = analyst_records(world)
    with walker(browser, live_server.url, "analyst", width) as walk:
        walk.sign_in("analyst", PASSWORD)
        page = walk.page
        page.get_by_role("link", name="Analysis").first.click()
        page.wait_for_url(live_server.url + "/analysis/")
        assert page.locator("h1").inner_text() == "ASB observations on the map"
        page.wait_for_selector("#records-map path.leaflet-interactive")
        rows = page.locator("table.records tbody tr")
        assert rows.count() == total
        assert "Rowdy or inconsiderate behaviour" in page.locator("table.records").inner_text()
        assert "rowdy_inconsiderate" not in page.locator("table.records").inner_text()
        assert page.locator(".leaflet-control-layers").count() == 1
        walk.no_overflow()
        walk.shot("map")  # the laptop's is docs/img/analysis-workspace.png

        # A shape drawn round one record's point (the points are drawn last) narrows the list.
        page.get_by_role("button", name="Draw an area").click()
        page.locator("#records-map").scroll_into_view_if_needed()
        dot = page.locator("#records-map path.leaflet-interactive").last.bounding_box()
        cx, cy = dot["x"] + dot["width"] / 2, dot["y"] + dot["height"] / 2
        for dx, dy in ((-30, -30), (30, -30), (30, 30), (-30, 30)):
            page.mouse.click(cx + dx, cy + dy)
        with page.expect_navigation():
            page.get_by_role("button", name="Finish shape").click()
        assert "polygon=POLYGON" in page.url
        narrowed = page.locator("table.records tbody tr").count()
        assert 0 < narrowed < total
        assert page.get_by_role("button", name="Remove the shape").is_visible()
        walk.no_overflow()
        walk.shot("polygon")

        walk.go("/analysis/")
        page.locator("table.records tbody tr a").first.click()
        page.wait_for_url(lambda url: "/analysis/records/observation/" in url)
        assert page.locator(".withheld").count() == 3  # description, persons, photos: no grant
        assert "Group gathered" not in page.content()
        page.wait_for_selector("#record-map path.leaflet-interactive")
        walk.no_overflow()
        walk.shot("record")

        walk.go("/analysis/connect/")
        assert live_server.url + "/ogc/" in page.locator(".connect").first.inner_text()
        assert "ogr2ogr -f GPKG" in page.locator("pre.command").first.inner_text()
        page.fill("input[name=name]", "QGIS on my laptop")
        page.get_by_role("button", name="Make a token").click()
        assert page.locator("#new-token").inner_text().startswith("fsp_")
        assert "QGIS on my laptop" in page.locator(".tokens table").inner_text()
        walk.no_overflow()
        walk.shot("connect")

        walk.go("/analysis/grants/")
        page.check("input[name=fields][value=description]")
        page.fill("textarea[name=purpose]", "Repeat victims in Leigh for the quarterly review")
        page.fill("input[name=valid_until]", (timezone.localdate() + timedelta(days=30)).isoformat())
        page.get_by_role("button", name="Send the request").click()
        page.wait_for_url(lambda url: url.endswith("/analysis/grants/?sent=1"))
        assert "Waiting for a decision" in page.locator(".request").first.inner_text()
        walk.no_overflow()
        walk.shot("grants")

        # Downloads: CSV straight away; Excel prepared in the background, then fetched from
        # "Your exports" once built (the Celery task's function run here, as a worker would).
        walk.go("/analysis/")
        with page.expect_download() as csv_file:
            page.get_by_role("button", name=re.compile("^CSV")).click()
        assert csv_file.value.suggested_filename == "observation.csv"
        assert len(Path(csv_file.value.path()).read_text().splitlines()) == total + 1
        with page.expect_navigation():
            page.get_by_role("button", name=re.compile("^Excel")).click()
        assert "Excel (XLSX) file is being prepared" in page.locator(".messages").inner_text()
        assert "Queued" in page.locator("table.exports").inner_text()
        walk.no_overflow()
        walk.shot("export-requested")
        export_build_task(str(Export.objects.get(owner=world.users["analyst"], format="xlsx").pk))
        page.get_by_role("link", name="Check again").click()
        assert "Ready" in page.locator("table.exports").inner_text()
        with page.expect_download() as xlsx_file:
            page.locator("table.exports").get_by_role("link", name="Download").first.click()
        assert xlsx_file.value.suggested_filename.endswith(".xlsx")
        sheet = load_workbook(io.BytesIO(Path(xlsx_file.value.path()).read_bytes()), read_only=True).active
        values = list(sheet.values)
        assert len(values) == total + 1 and values[0][0] == "id"
        walk.no_overflow()
        walk.shot("exports")
        walk.assert_clean()
