"""Cross-site request forgery: a page on another site makes the signed-in user's browser POST.

The browser sends the session cookie but cannot read or send the CSRF token. Every state
change of the review desk and the admin must then be refused (403) and change nothing; the
same request with the token goes through (so the 403 is about the token, not the role). The
token-authenticated APIs must not act on a session cookie alone.
"""
from __future__ import annotations

import json

import pytest
from django.test import Client

from fieldsync.sync.models import Conflict, Device, QuarantinedMutation
from warden_app.models import Observation, Organisation, User

pytestmark = pytest.mark.django_db


def token_of(client: Client, page: str) -> str:
    """The CSRF token the page hands out, as the real form would post it."""
    response = client.get(page)
    assert response.status_code == 200, (page, response.status_code)
    return client.cookies["csrftoken"].value


def desk_forms(world) -> list[tuple[str, str, dict, callable]]:
    """(page showing the form, URL it posts to, its data, a probe of what it changes)."""
    r, ids = world.records, world.ids
    record = f"/review/records/observation/{r['council_leigh']}/"
    return [
        (record, record + "review", {"decision": "approved", "note": "fine", "version": 1},
         lambda: Observation.objects.get(pk=r["council_leigh"]).review_state),
        (f"/review/conflicts/{ids['conflict_leigh']}/", f"/review/conflicts/{ids['conflict_leigh']}/",
         {"field__description": "device", "note": "kept the device's"},
         lambda: Conflict.objects.get(pk=ids["conflict_leigh"]).resolved_at),
        (f"/review/quarantine/{ids['quarantine_leigh']}/", f"/review/quarantine/{ids['quarantine_leigh']}/",
         {"note": "re-keyed"}, lambda: QuarantinedMutation.objects.get(pk=ids["quarantine_leigh"]).resolved_at),
        ("/review/devices/", f"/review/devices/{ids['device_warden_leigh']}/revoke", {},
         lambda: Device.objects.get(pk=ids["device_warden_leigh"]).revoked_at),
    ]


def test_desk_state_changes_without_the_token_are_refused_and_change_nothing(sec_world):
    supervisor = sec_world.principals["supervisor"]
    for page, url, data, probe in desk_forms(sec_world):
        before = probe()
        forged = supervisor.client(csrf=True).post(url, data)
        assert forged.status_code == 403, (url, forged.status_code)
        assert probe() == before, url

        client = supervisor.client(csrf=True)
        genuine = client.post(url, {**data, "csrfmiddlewaretoken": token_of(client, page)})
        assert genuine.status_code == 302, (url, genuine.status_code, genuine.content[:300])
        assert probe() != before, url


def test_desk_logout_and_login_need_the_token(sec_world):
    supervisor = sec_world.principals["supervisor"]
    client = supervisor.client(csrf=True)
    assert client.post("/review/logout/").status_code == 403
    assert client.get("/review/").status_code == 200  # still signed in
    # Login CSRF: a forged sign-in would put the victim in the attacker's session.
    assert Client(enforce_csrf_checks=True).post(
        "/review/login/", {"username": "supervisor_leigh", "password": "fieldsync-demo"}).status_code == 403


def test_admin_changes_without_the_token_are_refused(sec_world):
    admin = sec_world.principals["admin"]
    warden = sec_world.users["warden_leigh"]
    add = {"name": "Forged Org", "slug": "forged-org", "kind": "council"}
    deactivate = {"action": "delete_selected", "_selected_action": [warden.pk]}
    cases = [
        ("/admin/warden_app/organisation/add/", add, lambda: Organisation.objects.filter(slug="forged-org").exists()),
        ("/admin/warden_app/user/", deactivate, lambda: User.objects.filter(pk=warden.pk).exists()),
        ("/admin/sync/device/", {"action": "revoke_devices", "_selected_action": [sec_world.ids["device_pcso_leigh"]]},
         lambda: Device.objects.get(pk=sec_world.ids["device_pcso_leigh"]).revoked_at),
    ]
    for url, data, probe in cases:
        before = probe()
        assert admin.client(csrf=True).post(url, data).status_code == 403, url
        assert probe() == before, url
    assert admin.client(csrf=True).post("/admin/logout/").status_code == 403

    # With the token the same add goes through.
    client = admin.client(csrf=True)
    response = client.post("/admin/warden_app/organisation/add/",
                           {**add, "csrfmiddlewaretoken": token_of(client, "/admin/warden_app/organisation/add/")})
    assert response.status_code == 302 and Organisation.objects.filter(slug="forged-org").exists()


def test_the_sync_api_takes_no_session_cookie(sec_world):
    """A warden signed in to the desk's login (a session cookie in the browser) is still
    nobody to the sync API: only the device token counts, so a forged cross-site POST
    carrying the cookie pushes nothing."""
    from tests.sync.conftest import mutation, observation_data

    warden = sec_world.principals["warden"]
    before = Observation.objects.count()
    body = json.dumps({"mutations": [mutation("observation", "create", "5d9c3c9e-1d5e-4c1a-9a63-6c2f3c6d0b10",
                                              observation_data())]})
    client = warden.client(csrf=True)
    assert "sessionid" in client.cookies
    for method, path, data in (("post", "/api/v1/sync/push", body), ("get", "/api/v1/sync/pull", None),
                               ("get", "/api/v1/sync/manifest", None)):
        kwargs = {"data": data, "content_type": "application/json"} if data else {}
        response = getattr(client, method)(path, **kwargs)
        assert response.status_code == 401, (path, response.status_code)
    assert Observation.objects.count() == before


def test_session_authenticated_api_writes_need_the_token(sec_world):
    """Where the API does accept the session (the analyst's browser, the DPO's, a supervisor
    revoking a device), an unsafe method without the CSRF token is refused."""
    supervisor, dpo = sec_world.principals["supervisor"], sec_world.principals["dpo"]
    device = sec_world.ids["device_warden_leigh"]
    # A cross-site form posts urlencoded by default: the CSRF check refuses it.
    response = supervisor.client(csrf=True).post(f"/api/v1/devices/{device}/revoke", "",
                                                 content_type="application/x-www-form-urlencoded")
    assert response.status_code == 403 and "CSRF" in response.json()["message"]
    # Multipart (enctype="multipart/form-data") is no body any API view reads: refused as
    # such (415) while the CSRF check looks for its token in it. Refused either way.
    response = supervisor.client(csrf=True).post(f"/api/v1/devices/{device}/revoke")
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"
    assert Device.objects.get(pk=device).revoked_at is None

    record = sec_world.records["police_leigh"]
    response = dpo.client(csrf=True).post(f"/api/v1/dpo/records/observation/{record}/erasure",
                                          json.dumps({"justification": "SAR-9"}), content_type="application/json")
    assert response.status_code == 403
    assert Observation.objects.get(pk=record).description  # not erased

    response = supervisor.client(csrf=True).post("/api/v1/exports", json.dumps({"type": "observation"}),
                                                 content_type="application/json")
    assert response.status_code == 403
