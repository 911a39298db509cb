"""The handheld app on a 360 px phone, with gloves and with a keyboard: nothing scrolls
sideways, every target is at least 48 px, focus is always visible, the whole flow works
from the keyboard; and a poor GPS fix asks for a pin on the (tile-less, local) map."""
import pytest

from tests.e2e.handheld_support import GEO, PIN, Handheld, chromium_context
from tests.sync.conftest import PASSWORD
from warden_app.models import Observation

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Visible controls smaller than 48 x 48 CSS px (radios and checkboxes count by their row).
SMALL_TARGETS_JS = """() => {
  const selector = "button, a.btn, a.record, select, textarea, summary, label.file-btn, .choice, "
    + "input:not([type=radio]):not([type=checkbox]):not([type=file]):not(.visually-hidden)";
  return [...document.querySelectorAll(selector)]
    .filter((el) => el.offsetParent !== null && !el.closest(".leaflet-container"))
    .map((el) => { const r = el.getBoundingClientRect();
      return {what: (el.id || el.textContent || el.tagName).trim().slice(0, 40), w: r.width, h: r.height}; })
    .filter((r) => r.w < 48 || r.h < 48);
}"""
OVERFLOW_JS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
FOCUS_JS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  return {id: el.id, tag: el.tagName, text: (el.textContent || '').trim().slice(0, 40), type: el.type || null,
          name: el.name || null, value: el.value || null,
          outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 3};
}"""


def tab_to(app: Handheld, matches, limit: int = 80) -> dict:
    """Press Tab until the focused element matches; every stop must show its focus."""
    for _ in range(limit):
        app.page.keyboard.press("Tab")
        focused = app.page.evaluate(FOCUS_JS)
        if focused and focused["type"] != "file":  # (a file input's label shows the ring)
            assert focused["outline"], f"no visible focus on {focused}"
        if focused and matches(focused):
            return focused
    raise AssertionError("never reached the control with Tab")


def check_layout(app: Handheld, screen: str):
    assert app.page.evaluate(OVERFLOW_JS) <= 0, f"{screen} scrolls sideways at 360 px"
    small = app.page.evaluate(SMALL_TARGETS_JS)
    assert not small, f"targets under 48 px on {screen}: {small}"


def test_keyboard_only_on_a_360px_phone_with_48px_targets(live_server, world):
    with chromium_context() as context:
        app = Handheld(context, live_server.url).open()
        check_layout(app, "login")

        # Sign in with the keyboard alone.
        tab_to(app, lambda f: f["id"] == "login-username")
        app.page.keyboard.type("warden")
        tab_to(app, lambda f: f["id"] == "login-password")
        app.page.keyboard.type(PASSWORD)
        tab_to(app, lambda f: f["id"] == "login-pin")
        app.page.keyboard.type(PIN)
        tab_to(app, lambda f: f["id"] == "login-pin2")
        app.page.keyboard.type(PIN)
        app.mark_sync()
        app.page.keyboard.press("Enter")
        app.wait_screen("home")
        app.wait_sync()
        check_layout(app, "home")

        # Record an observation with the keyboard alone.
        tab_to(app, lambda f: f["text"] == "New observation")
        app.page.keyboard.press("Enter")
        app.wait_screen("observation")
        app.wait_fix()
        check_layout(app, "observation form")
        tab_to(app, lambda f: f["type"] == "radio")
        app.page.keyboard.press("ArrowDown")  # Personal -> Nuisance
        tab_to(app, lambda f: f["id"] == "obs-incident")
        app.page.keyboard.type("Noise")
        tab_to(app, lambda f: f["id"] == "obs-description")
        app.page.keyboard.type("Shouting outside the late shop")
        tab_to(app, lambda f: f["value"] == "warning")
        app.page.keyboard.press("Space")
        tab_to(app, lambda f: f["text"] == "Save observation")
        app.page.keyboard.press("Enter")
        app.wait_screen("home")

        app.go("#sync")
        app.wait_screen("sync")
        check_layout(app, "sync")
        tab_to(app, lambda f: f["id"] == "sync-now")
        app.mark_sync()
        app.page.keyboard.press("Enter")
        app.wait_sync()

        app.start_audit("Keyboard Lane")
        check_layout(app, "audit")
        app.page.get_by_role("link", name="Add item").click()
        app.wait_screen("item")
        app.page.get_by_label("Issue type").select_option(label="Detritus")
        check_layout(app, "audit item")
        app.lock()
        check_layout(app, "locked")
        app.assert_clean()

    observation = Observation.objects.get()
    assert (observation.qualifier, observation.incident_type) == ("nuisance", "noise")
    assert observation.description == "Shouting outside the late shop"
    assert observation.action_taken == ["warning"]


def test_a_poor_fix_asks_for_a_pin_on_the_local_map(live_server, world):
    poor = {**GEO, "accuracy": 400}
    with chromium_context(geolocation=poor) as context:
        app = Handheld(context, live_server.url).open()
        requested: list[str] = []
        app.page.on("request", lambda request: requested.append(request.url))
        app.login("warden", PASSWORD)
        app.home()
        app.page.get_by_role("link", name="New observation").click()
        app.wait_screen("observation")
        app.page.get_by_text("The fix is poor").wait_for()
        map_ = app.page.locator(".map.leaflet-container")
        map_.wait_for(state="visible")
        app.page.locator(".map .leaflet-overlay-pane path").first.wait_for()  # the area's outline
        assert app.page.locator(".map .leaflet-tile").count() == 0  # no TILE_URL: no basemap

        app.page.get_by_label("Nuisance", exact=True).check()
        app.page.get_by_label("Incident type").select_option(label="Trespass")
        app.page.get_by_label("Description", exact=True).fill("On the railway embankment")
        app.page.get_by_role("button", name="Save observation").click()
        app.page.get_by_text("A location is needed").wait_for()
        assert app.screen() == "observation"

        box = map_.bounding_box()
        map_.click(position={"x": box["width"] / 2 + 30, "y": box["height"] / 2})  # a tap east of the fix
        app.page.locator(".map .leaflet-marker-icon").wait_for()
        app.page.get_by_text("Manual pin at").wait_for()
        app.screenshot("manual-pin")
        app.page.get_by_role("button", name="Save observation").click()
        app.wait_screen("home")
        app.sync()
        app.assert_clean()
        base = live_server.url
        assert all(url.startswith((base, "data:", "blob:")) for url in requested), requested

    observation = Observation.objects.get()
    assert observation.fix_source == "manual" and observation.accuracy_m is None
    assert observation.location.x > GEO["longitude"]  # where the pin was put, not the poor fix
    assert observation.location.y == pytest.approx(GEO["latitude"], abs=0.0005)
    assert observation.area_id == world.areas["leigh"].pk
