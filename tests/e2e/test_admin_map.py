"""A real Chromium, cut off from everything but the live server, logs into the admin as the
admin role and sees an area's Leaflet map draw: no CDN and no tile server is ever asked."""
from urllib.parse import urlsplit

import pytest
from django.contrib.gis.geos import MultiPolygon, Polygon

from tests.e2e.handheld_support import ARTIFACTS, DESKTOP, local_only, sign_in
from warden_app.models import Area, BoundarySet, Organisation, User
from warden_app.roles import Role
from warden_app.services.roles import role_groups_ensure

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "fieldsync-demo-e2e"


@pytest.fixture
def area_and_admin(transactional_db):
    groups = role_groups_ensure()
    council = Organisation.objects.create(
        name="Wigan Council", slug="wigan-council", kind="council"
    )
    user = User.objects.create_user(
        username="admin", password=PASSWORD, is_staff=True, organisation=council
    )
    user.groups.add(groups[Role.ADMIN])
    boundary_set = BoundarySet.objects.create(
        name="Partnership areas", slug="areas", operational=True
    )
    lon, lat, half = -2.5170, 53.4975, 0.005
    ring = (
        (lon - half, lat - half), (lon + half, lat - half), (lon + half, lat + half),
        (lon - half, lat + half), (lon - half, lat - half),
    )
    area = Area.objects.create(
        boundary_set=boundary_set, name="Leigh Town Centre", code="leigh",
        geom=MultiPolygon(Polygon(ring), srid=4326),
    )
    return area, user


def test_area_map_renders_offline_in_admin_and_docs_stay_local(live_server, area_and_admin, browser):
    area, user = area_and_admin
    server = urlsplit(live_server.url)
    requested: list[str] = []
    page_errors: list[str] = []
    console: list[str] = []

    context = browser.new_context(viewport=DESKTOP)
    aborted = local_only(context, live_server.url)
    page = context.new_page()
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("requestfailed", lambda r: console.append(f"FAILED {r.url} {r.failure}"))

    change_url = f"/admin/warden_app/area/{area.pk}/change/"
    page.goto(f"{live_server.url}/admin/login/?next={change_url}")
    sign_in(page, user.username, PASSWORD, lands_on=f"**{change_url}")

    map_container = page.locator("#id_geom-map.leaflet-container")
    map_container.wait_for(state="visible", timeout=15_000)
    assert map_container.is_visible()
    # The stored area is drawn as a vector path, with no basemap behind it.
    page.locator("#id_geom-map .leaflet-overlay-pane path").first.wait_for(timeout=10_000)
    assert page.locator("#id_geom-map .leaflet-tile").count() == 0
    # It is editable: Leaflet.draw's toolbar is there.
    assert page.locator("#id_geom-map .leaflet-draw").count() == 1

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-area-map.png"), full_page=True)

    # The API docs render from the sidecar's local bundles.
    page.goto(f"{live_server.url}/api/docs/")
    page.locator(".swagger-ui .info .title").wait_for(timeout=15_000)
    page.goto(f"{live_server.url}/api/redoc/")
    page.locator(".api-info h1, [role=main] h1, redoc h1").first.wait_for(timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "api-redoc.png"))

    foreign = [
        url for url in requested
        if urlsplit(url).scheme not in {"data", "blob"}
        and (urlsplit(url).hostname, urlsplit(url).port) != (server.hostname, server.port)
    ]
    assert not aborted, f"blocked requests to other hosts: {aborted}"
    assert not foreign, f"requests to other hosts: {foreign}"
    assert not page_errors, page_errors
    # A request the page policy blocks never reaches the route, so look at the console too.
    assert not [line for line in console if "Content Security Policy" in line], console
