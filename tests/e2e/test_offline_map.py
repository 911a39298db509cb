"""The handheld's map with no network: after signing in, the service worker keeps the imported
base map's tiles for the user's areas (HANDHELD_TILE_ZOOMS, capped by HANDHELD_TILE_MAX), and
with the browser offline and the page reloaded the map draws them, pixel for pixel; when the
user's areas or the base map change, the kept tiles follow. Vector base maps draw through the vendored
renderer. Every request stays on the live server."""
from __future__ import annotations

import math

import pytest

from tests.basemap_files import (
    LEIGH_BOUNDS,
    TILE_COLOUR,
    leigh_png_tiles,
    mvt_tile,
    png_tile,
    tiles_covering,
    write_mbtiles,
    write_pmtiles,
)
from tests.e2e.handheld_support import GEO, Handheld, chromium_context, local_only
from tests.sync.conftest import LEIGH_BOX, LEIGH_WEST_BOX, PASSWORD
from warden_app.basemaps import store
from warden_app.basemaps.store import basemap_import
from warden_app.models import Observation
from warden_app.services.teams import team_set_areas

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

POOR = {**GEO, "accuracy": 400}
ZOOMS = (12, 16)

# The first loaded tile's size and the colour of its middle pixel (same origin: readable).
TILE_PIXELS_JS = """() => {
  const img = [...document.querySelectorAll('.map img.leaflet-tile')].find((i) => i.complete && i.naturalWidth);
  if (!img) return null;
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const g = canvas.getContext('2d');
  g.drawImage(img, 0, 0);
  const rgb = [...g.getImageData(128, 128, 1, 1).data].slice(0, 3);
  return {width: img.naturalWidth, height: img.naturalHeight, rgb};
}"""

CACHE_JS = """async (version) => {
  const cache = await caches.open('fieldsync-tiles-' + version);
  const paths = (await cache.keys()).map((r) => new URL(r.url).pathname);
  const meta = await (await cache.match('/warden/__tiles__/meta.json')).json();
  return {paths: paths.filter((p) => p.startsWith('/tiles/')), count: meta.count, bytes: meta.bytes, key: meta.key,
          capped: meta.capped};
}"""


def path_zxy(path: str) -> tuple[int, int, int]:
    z, x, name = path.split("/")[3:6]
    return int(z), int(x), int(name.split(".")[0])


def planned(boxes, zooms=ZOOMS) -> set[tuple[int, int, int]]:
    """What the handheld should ask for: each area's box, one tile of margin, at each zoom."""
    out = set()
    for z in range(zooms[0], zooms[1] + 1):
        n = 1 << z
        for west, south, east, north in boxes:
            x0 = int((west + 180) / 360 * n) - 1
            x1 = int((east + 180) / 360 * n) + 1
            y0 = int((1 - math.asinh(math.tan(math.radians(north))) / math.pi) / 2 * n) - 1
            y1 = int((1 - math.asinh(math.tan(math.radians(south))) / math.pi) / 2 * n) + 1
            out |= {(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)}
    return out


@pytest.fixture
def raster_basemap(settings, tmp_path):
    settings.BASEMAP_DIR = tmp_path / "basemaps"
    settings.TILE_URL = ""
    settings.HANDHELD_TILE_ZOOMS = f"{ZOOMS[0]}-{ZOOMS[1]}"
    settings.HANDHELD_TILE_MAX = 3000
    store.forget_cached()
    basemap = basemap_import(path=write_mbtiles(tmp_path / "leigh.mbtiles", leigh_png_tiles(range(10, 17))),
                             attribution="Test tiles")
    yield basemap
    store.forget_cached()


def open_location_map(app: Handheld):
    app.home()
    app.page.get_by_role("link", name="New observation").click()
    app.wait_screen("observation")
    app.page.get_by_text("The fix is poor").wait_for()
    app.page.locator(".map.leaflet-container").wait_for(state="visible")


def test_the_handheld_keeps_its_areas_tiles_and_draws_them_offline(live_server, world, raster_basemap):
    version = raster_basemap.version
    in_archive = set(tiles_covering(LEIGH_BOUNDS, range(10, 17)))
    expected = planned([LEIGH_BOX]) & in_archive
    with chromium_context(geolocation=POOR) as context:
        aborted = local_only(context, live_server.url)
        app = Handheld(context, live_server.url).open()
        app.login("warden", PASSWORD)
        app.wait_offline_ready()
        app.poll("() => document.documentElement.dataset.tiles === 'ready'", timeout=60_000)
        kept = app.page.evaluate(CACHE_JS, version)
        assert {path_zxy(p) for p in kept["paths"]} == expected
        assert kept["count"] == len(expected) and kept["bytes"] > 0 and kept["capped"] is None

        app.go("#settings")
        app.wait_screen("settings")
        app.page.get_by_text(f"Offline map: {len(expected)} tiles,").wait_for()
        assert f"zoom {ZOOMS[0]}\N{EN DASH}{ZOOMS[1]}" in app.page.locator("#offline-map").inner_text()
        app.screenshot("offline-map-settings")

        # --- no network at all from here -------------------------------------------------
        app.go_offline()
        app.reload()
        app.unlock()
        app.wait_screen("settings")
        open_location_map(app)
        app.page.locator(".map img.leaflet-tile-loaded").first.wait_for()
        pixels = app.poll(TILE_PIXELS_JS)
        assert (pixels["width"], pixels["height"]) == (256, 256)
        assert pixels["rgb"] == list(TILE_COLOUR)
        assert app.page.locator(".map").get_attribute("data-basemap") == "raster"
        assert app.page.locator(".map .leaflet-control-scale").count() == 1
        app.screenshot("offline-map-tiles")
        app.assert_clean()
        assert not [line for line in app.console if line.startswith("error") and "/tiles/" in line], app.console
        assert aborted == []


def test_the_kept_tiles_follow_the_users_areas_and_base_map_and_the_cap_is_explained(
        live_server, world, raster_basemap, settings, tmp_path):
    version = raster_basemap.version
    in_archive = set(tiles_covering(LEIGH_BOUNDS, range(10, 17)))
    up_to_15 = len(planned([LEIGH_BOX], (12, 15)) & in_archive)
    cap = len(planned([LEIGH_BOX], (12, 15)))  # leigh up to zoom 15 fits; zoom 16 does not
    settings.HANDHELD_TILE_MAX = cap
    with chromium_context() as context:
        aborted = local_only(context, live_server.url)
        app = Handheld(context, live_server.url).open()
        app.login("warden", PASSWORD)
        app.wait_offline_ready()
        app.poll("() => document.documentElement.dataset.tiles === 'ready'", timeout=60_000)
        first = app.page.evaluate(CACHE_JS, version)
        assert first["count"] == up_to_15 and first["capped"]["zoom"] == 16
        app.go("#settings")
        app.wait_screen("settings")
        text = app.page.locator("#offline-map").inner_text()
        assert "zoom 12\N{EN DASH}15" in text and "Zoom 16 and closer are not kept" in text
        assert f"limit of {cap}" in text

        # The warden's team now also works Leigh West: the next sync brings its tiles.
        team_set_areas(team=world.teams["leigh"], areas=[world.areas["leigh"], world.areas["leigh_west"]])
        app.sync()
        app.poll(f"async () => (await ({CACHE_JS})('{version}')).key !== {first['key']!r}", timeout=60_000)
        second = app.page.evaluate(CACHE_JS, version)
        west = planned([LEIGH_WEST_BOX], (12, 12)) & in_archive
        paths = set(second["paths"])
        assert all(f"/tiles/{version}/{z}/{x}/{y}.png" in paths for z, x, y in west)
        assert second["key"] and second["key"] != first["key"]

        # A new base map: the next online visit keeps its tiles and drops the old ones.
        other = basemap_import(path=write_mbtiles(tmp_path / "other.mbtiles", {
            coords: png_tile((20, 40, 220)) for coords in tiles_covering(LEIGH_BOUNDS, range(12, 15))}))
        app.reload()
        app.unlock()
        app.poll(f"async () => (await caches.keys()).includes('fieldsync-tiles-{other.version}')"
                 f" && !(await caches.keys()).includes('fieldsync-tiles-{version}')", timeout=60_000)
        app.poll("() => document.documentElement.dataset.tiles === 'ready'", timeout=60_000)
        third = app.page.evaluate(CACHE_JS, other.version)
        assert third["paths"] and all(p.startswith(f"/tiles/{other.version}/") for p in third["paths"])
        app.assert_clean()
        assert aborted == []


def test_a_vector_base_map_is_drawn_by_the_vendored_renderer(live_server, world, settings, tmp_path):
    settings.BASEMAP_DIR = tmp_path / "basemaps"
    settings.TILE_URL = ""
    store.forget_cached()
    tiles = {coords: mvt_tile() for coords in tiles_covering(LEIGH_BOUNDS, range(12, 17))}
    basemap_import(path=write_pmtiles(tmp_path / "v.pmtiles", tiles, tile_type=1, tile_compression=2))
    try:
        with chromium_context(geolocation=POOR) as context:
            aborted = local_only(context, live_server.url)
            app = Handheld(context, live_server.url).open()
            app.login("warden", PASSWORD)
            open_location_map(app)
            app.page.locator(".map[data-basemap=vector]").wait_for()
            app.page.locator(".map canvas.leaflet-tile").first.wait_for()
            # The square of layer "water" covers the middle of each tile: painted water-blue.
            colour = app.poll("""() => {
              const c = [...document.querySelectorAll('.map canvas.leaflet-tile')].find((t) => t.width);
              if (!c) return null;
              const d = c.getContext('2d').getImageData(c.width / 2, c.height / 2, 1, 1).data;
              return d[3] ? [d[0], d[1], d[2]] : null;
            }""")
            assert colour == [0xB7, 0xD3, 0xE9]
            app.screenshot("vector-map")
            app.assert_clean()
            assert aborted == []
    finally:
        store.forget_cached()



def test_without_a_base_map_the_map_shows_outlines_and_a_poor_fix_needs_no_pin(live_server, world, settings):
    settings.TILE_URL = ""
    store.forget_cached()
    with chromium_context(geolocation=POOR) as context:
        aborted = local_only(context, live_server.url)
        app = Handheld(context, live_server.url).open()
        app.login("warden", PASSWORD)
        open_location_map(app)
        page = app.page
        assert page.locator(".map").get_attribute("data-basemap") == "none"
        page.locator(".map .leaflet-overlay-pane path").first.wait_for()  # outline and accuracy circle
        assert page.locator(".map .leaflet-tile").count() == 0
        assert page.locator(".map .leaflet-control-scale").is_visible()
        assert page.locator(".map .map-note").inner_text().startswith("No base map")
        assert "place a pin by your areas' outlines" in page.locator(".loc-status").inner_text()
        app.screenshot("no-basemap-poor-fix")

        page.get_by_label("Nuisance", exact=True).check()
        page.get_by_label("Incident type").select_option(label="Trespass")
        page.get_by_role("button", name="Use this fix (±400 m)").click()
        page.get_by_text("Using the GPS fix as it is (±400 m).").wait_for()
        page.get_by_role("button", name="Save observation").click()
        app.wait_screen("home")
        app.sync()
        app.assert_clean()
        assert aborted == []
    observation = Observation.objects.get()
    assert observation.accuracy_m == pytest.approx(400) and observation.fix_source == "network"
    assert observation.location.x == pytest.approx(GEO["longitude"], abs=1e-6)
