"""The Content-Security-Policy in a real Chromium: every browser page of fieldsync (the warden
app's shell, the review desk with its record map, the admin with django-leaflet's map widget,
the API docs) loads and works under the policy it is sent, and the browser reports no
violation. Cut off from everything but the live server, as in tests/e2e.
"""
from __future__ import annotations

import pytest

from tests.e2e.handheld_support import DESKTOP, chromium, local_only, sign_in

from .conftest import build_security_world

pytestmark = [pytest.mark.e2e]

PASSWORD = "fieldsync-demo"


@pytest.fixture
def committed_world(transactional_db, media, own_cache, settings, monkeypatch):
    from warden_app.tasks import export_build_task

    settings.SYNC_ENROL_RATE = "1000/min"
    monkeypatch.setattr(export_build_task, "apply_async", lambda *args, **kwargs: None)
    return build_security_world()


def test_every_page_works_under_its_policy_with_no_violation(live_server, committed_world):
    world = committed_world
    console: list[str] = []
    errors: list[str] = []
    area = world.analysis.demo.areas["LEIGH-TC"].pk

    with chromium() as browser:
        context = browser.new_context(viewport=DESKTOP)
        aborted = local_only(context, live_server.url)
        page = context.new_page()
        page.on("console", lambda msg: console.append(f"{page.url} {msg.type}: {msg.text}"))
        page.on("pageerror", lambda error: errors.append(f"{page.url} {error}"))

        # The warden app's shell starts (its own policy).
        page.goto(f"{live_server.url}/warden/")
        page.locator("#app :is(form, button, input)").first.wait_for(timeout=15_000)

        # The review desk: sign in, queue, a record with its map, devices.
        page.goto(f"{live_server.url}/review/login/")
        sign_in(page, "supervisor_leigh", PASSWORD, lands_on=f"{live_server.url}/review/")
        page.goto(f"{live_server.url}/review/records/observation/{world.records['council_leigh']}/")
        page.locator("#record-map[data-ready=true]").wait_for(timeout=15_000)
        page.locator("#record-map path.record-marker").wait_for(timeout=10_000)
        page.goto(f"{live_server.url}/review/devices/")
        page.locator("main table").first.wait_for(timeout=10_000)

        # The admin: sign in, an area's editable map (inline scripts under the nonce), a record.
        page.goto(f"{live_server.url}/admin/login/")
        sign_in(page, "admin", PASSWORD, lands_on=f"{live_server.url}/admin/")
        page.goto(f"{live_server.url}/admin/warden_app/area/{area}/change/")
        page.locator("#id_geom-map .leaflet-overlay-pane path").first.wait_for(timeout=15_000)
        assert page.locator("#id_geom-map .leaflet-draw").count() == 1
        page.goto(f"{live_server.url}/admin/warden_app/observation/{world.records['council_leigh']}/change/")
        page.locator("#content h1").wait_for(timeout=10_000)  # read-only: no map widget

        # The API docs: the one place inline script is allowed.
        page.goto(f"{live_server.url}/api/docs/")
        page.locator(".swagger-ui .info .title").wait_for(timeout=15_000)
        page.goto(f"{live_server.url}/api/redoc/")
        page.locator("[role=main] h1, .api-info h1").first.wait_for(timeout=15_000)

    violations = [line for line in console if "Content Security Policy" in line or "Refused to" in line]
    assert not violations, violations
    assert not errors, errors
    # Nothing the policy let through went anywhere but the live server.
    assert not aborted, aborted
