"""The handheld app works with no network at all after one online visit, and what a warden
records offline reaches PostGIS intact once the network returns."""
import hashlib

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders

from fieldsync.sync.models import Attachment
from tests.e2e.handheld_support import GEO, PIN, Handheld, chromium_context, jpeg_bytes
from tests.sync.conftest import PASSWORD
from warden_app.models import AuditItem, Observation, StreetAudit

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_shell_manifest_and_service_worker_are_served_for_the_app(client):
    shell = client.get("/warden/")
    assert shell.status_code == 200
    csp = shell["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp  # no CDN, no inline script
    assert b'rel="manifest"' in shell.content

    manifest = client.get("/warden/manifest.webmanifest")
    assert manifest.status_code == 200
    assert manifest["Content-Type"].startswith("application/manifest+json")
    body = manifest.json()
    assert body["scope"] == "/warden/" and body["start_url"] == "/warden/" and body["display"] == "standalone"
    assert {icon["sizes"] for icon in body["icons"]} >= {"192x192", "512x512"}
    for icon in body["icons"]:
        assert finders.find(icon["src"].removeprefix(settings.STATIC_URL)), icon

    worker = client.get("/warden/sw.js")
    assert worker.status_code == 200
    assert worker["Service-Worker-Allowed"] == "/warden/"
    assert "javascript" in worker["Content-Type"]
    source = worker.content.decode()
    assert '"/warden/"' in source and "/static/handheld/js/main.js" in source and "/static/leaflet/leaflet.js" in source
    assert "/api/" in source  # the API is explicitly kept out of the cache


def test_warden_records_offline_reloads_and_syncs_into_postgis(live_server, world):
    warden = world.users["warden"]
    observation_photo = jpeg_bytes((180, 30, 30))
    item_photo = jpeg_bytes((30, 120, 40))
    observation_sha = hashlib.sha256(observation_photo).hexdigest()
    item_sha = hashlib.sha256(item_photo).hexdigest()

    with chromium_context() as context:
        app = Handheld(context, live_server.url).open()
        app.screenshot("login")
        app.login("warden", PASSWORD)
        app.wait_offline_ready()

        # --- no network at all from here -------------------------------------------------
        app.go_offline()
        assert app.page.evaluate(
            "() => fetch('/api/v1/sync/manifest', {cache: 'no-store'}).then(() => 'reached', () => 'failed')"
        ) == "failed"

        app.new_observation(
            description="Group of five drinking on the bench by the bus station",
            incident="Street drinking", qualifier="Nuisance", actions=("Advice given", "Contact card issued"),
            person={"description": "male, 30s, red coat", "approx_age": 35}, photo=observation_photo)
        audit_id = app.start_audit("Market Street, north side", notes="Evening walk")
        app.add_item("Litter", grade="C", note="Overflowing bin outside no. 12")
        app.add_item("Graffiti", grade="B", note="Tag on the shutter", photo=item_photo)
        app.add_item("Fly-tipping", note="Mattress in the alley")
        app.screenshot("audit")
        app.finish_audit()

        # The form with its photo, for the record.
        app.go("#obs/new")
        app.wait_screen("observation")
        app.wait_fix()
        app.screenshot("observation-form")
        app.home()
        assert "6 changes and 2 photos waiting" in app.text()

        # A reload with no network: the service worker serves the app, the vault still holds
        # the records, and nothing opens without the PIN.
        app.reload()
        app.wait_screen("locked")
        assert "Group of five" not in app.text()
        app.unlock(PIN)
        app.wait_screen("home")
        assert "Street drinking" in app.text()
        assert "Market Street, north side" in app.text()
        app.screenshot("home")
        assert "6 changes and 2 photos waiting" in app.text()
        app.go(f"#audit/{audit_id}")
        app.wait_screen("audit")
        assert app.page.locator("#audit-items li").count() == 3
        app.go("#sync")
        app.wait_screen("sync")
        assert app.page.locator("#outbox-list li").count() == 6
        assert Observation.objects.count() == 0 and StreetAudit.objects.count() == 0

        # --- the network returns: the app syncs by itself --------------------------------
        app.mark_sync()
        app.go_online()
        app.wait_sync("ok", timeout=60_000)
        app.wait_screen("sync")
        assert app.page.locator("#outbox-list li").count() == 0
        statuses = app.log_statuses()
        assert statuses.count("applied") >= 6, statuses
        app.screenshot("sync-log")
        app.assert_clean()

    leigh = world.areas["leigh"]
    observation = Observation.objects.get()
    assert observation.author == warden and observation.organisation == warden.organisation
    assert observation.area_id == leigh.pk
    assert observation.description == "Group of five drinking on the bench by the bus station"
    assert observation.incident_type == "street_drinking" and observation.qualifier == "nuisance"
    assert sorted(observation.action_taken) == ["advice", "contact_card"]
    assert observation.persons_involved == [{"description": "male, 30s, red coat", "approx_age": 35}]
    assert observation.accuracy_m == pytest.approx(GEO["accuracy"])
    assert observation.fix_source == "gps"
    assert observation.location.x == pytest.approx(GEO["longitude"], abs=1e-6)
    assert observation.location.y == pytest.approx(GEO["latitude"], abs=1e-6)
    assert observation.photos == [observation_sha]
    assert Attachment.objects.filter(sha256=observation_sha).exists()

    audit = StreetAudit.objects.get(pk=audit_id)
    assert audit.author == warden and audit.area_id == leigh.pk
    assert audit.title == "Market Street, north side" and audit.finished_at is not None
    assert audit.accuracy_m == pytest.approx(GEO["accuracy"]) and audit.fix_source == "gps"
    items = {item.issue_type: item for item in AuditItem.objects.filter(street_audit=audit)}
    assert set(items) == {"litter", "graffiti", "fly_tipping"}
    assert (items["litter"].grade, items["graffiti"].grade, items["fly_tipping"].grade) == ("C", "B", None)
    assert items["graffiti"].photos == [item_sha]
    assert all(item.area_id == leigh.pk and item.author == warden for item in items.values())
    assert Attachment.objects.filter(sha256=item_sha).exists()
