"""Personal API tokens and desk sessions end when they should: tokens expire
(API_TOKEN_LIFETIME_DAYS), die with a password change and with deactivation, and are listed
and revoked by their owner only; a password change or a deactivation in the admin ends the
user's desk sessions (their next request gets the sign-in page) and device tokens answer 401.

Every change is made the way an administrator or the owner makes it: real requests to the
admin, the desk and the API (Django's test client), real PostgreSQL and Redis.
"""
from __future__ import annotations

import base64
import json

import pytest
from django.forms import MultiWidget
from django.test import Client

from tests.analysis.conftest import PASSWORD, build_analysis_world

from .conftest import fresh_address

RECORDS = "/api/v1/records/observation"


@pytest.fixture
def world(db, media, own_cache, settings):
    settings.SYNC_ENROL_RATE = "1000/min"
    return build_analysis_world()


def basic(username: str, password: str = PASSWORD) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def api() -> Client:
    return Client(REMOTE_ADDR=fresh_address())


def desk_session(username: str, password: str = PASSWORD) -> Client:
    """A browser signed in on the desk's own form."""
    client = Client(REMOTE_ADDR=fresh_address())
    response = client.post("/review/login/", {"username": username, "password": password})
    assert response.status_code == 302, response.status_code
    return client


def shows_sign_in(response) -> bool:
    return response.status_code == 302 and response["Location"].startswith("/review/login/")


def make_token(username: str, name: str = "qgis", password: str = PASSWORD) -> tuple[int, str]:
    response = api().post("/api/v1/tokens", json.dumps({"name": name}), content_type="application/json",
                          **basic(username, password))
    assert response.status_code == 201, response.content
    body = response.json()
    return body["id"], body["token"]


def admin_form_post(admin: Client, url: str, **changes) -> None:
    """Submit an admin change form as a browser would: every field as the form shows it,
    with `changes` applied (a checkbox left out is unticked)."""
    form = admin.get(url).context["adminform"].form
    data: dict = {}
    for name, field in form.fields.items():
        if field.disabled:
            continue
        value = changes.get(name, form[name].value())
        if isinstance(field.widget, MultiWidget):
            for i, part in enumerate(field.widget.decompress(value)):
                data[f"{name}_{i}"] = "" if part is None else part
        elif isinstance(value, bool):
            if value:
                data[name] = "on"
        elif value is not None:
            data[name] = value
    response = admin.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response


# --- expiry ---------------------------------------------------------------------------------

def test_a_token_expires_after_the_configured_lifetime(world, settings):
    from django.utils import timezone

    from warden_app.models import ApiToken

    token_id, token = make_token("analyst")
    row = ApiToken.objects.get(pk=token_id)
    lifetime = row.expires_at - timezone.now()
    assert 89.9 < lifetime.total_seconds() / 86400 <= 90  # the default, 90 days
    assert api().get(RECORDS, **bearer(token)).status_code == 200

    settings.API_TOKEN_LIFETIME_DAYS = 0  # a token made now is already out of date
    _, stale = make_token("analyst", "stale")
    refused = api().get(RECORDS, **bearer(stale))
    assert refused.status_code == 401 and refused.json()["code"] == "not_authenticated"
    listed = {t["id"]: t["state"] for t in api().get("/api/v1/tokens", **basic("analyst")).json()["tokens"]}
    assert listed[token_id] == "active" and "expired" in listed.values()


# --- password change ------------------------------------------------------------------------

def test_a_password_set_in_the_admin_ends_the_users_tokens_and_desk_sessions(world):
    """The administrator sets a new password for the analyst (a suspected leak): the analyst's
    token answers 401 and each of their signed-in browsers gets the sign-in page."""
    analyst = world.users["analyst"]
    _, token = make_token("analyst")
    first, second = desk_session("analyst"), desk_session("analyst")
    assert first.get("/review/tokens/").status_code == 200

    admin = desk_session("admin")
    response = admin.post(f"/admin/warden_app/user/{analyst.pk}/password/",
                          {"password1": "a-new-long-passphrase-1", "password2": "a-new-long-passphrase-1",
                           "usable_password": "true"})
    assert response.status_code == 302, response.content[:500]

    assert api().get(RECORDS, **bearer(token)).status_code == 401
    assert shows_sign_in(first.get("/review/tokens/")) and shows_sign_in(second.get("/review/tokens/"))
    assert api().get(RECORDS, **basic("analyst", "a-new-long-passphrase-1")).status_code == 200
    listed = api().get("/api/v1/tokens", **basic("analyst", "a-new-long-passphrase-1")).json()["tokens"]
    assert [t["state"] for t in listed] == ["password_changed"]
    # A token made after the change works.
    _, fresh = make_token("analyst", "new", "a-new-long-passphrase-1")
    assert api().get(RECORDS, **bearer(fresh)).status_code == 200


def test_changing_your_own_password_keeps_this_session_and_ends_the_others(world):
    """The admin changes their own password on the admin's page: the browser they did it in
    stays signed in (Django updates its session hash), their other browser does not, and
    their tokens stop."""
    _, token = make_token("admin")
    here, elsewhere = desk_session("admin"), desk_session("admin")
    assert api().get(RECORDS, **bearer(token)).status_code == 200
    response = here.post("/admin/password_change/", {
        "old_password": PASSWORD, "new_password1": "another-long-passphrase-2",
        "new_password2": "another-long-passphrase-2"})
    assert response.status_code == 302, response.content[:500]
    assert here.get("/review/tokens/").status_code == 200
    assert shows_sign_in(elsewhere.get("/review/tokens/"))
    assert api().get(RECORDS, **bearer(token)).status_code == 401


# --- deactivation ---------------------------------------------------------------------------

def test_deactivation_in_the_admin_ends_desk_sessions_api_tokens_and_device_tokens(world):
    """The supervisor leaves: the administrator unticks 'active' in the admin. Their open
    desk gets the sign-in page on its next request, and every token they hold answers 401."""
    supervisor = world.users["supervisor_leigh"]
    desk = desk_session("supervisor_leigh")
    assert desk.get("/review/").status_code == 200
    _, token = make_token("supervisor_leigh")
    handheld = world.handheld("supervisor_leigh")
    assert api().get(RECORDS, **bearer(token)).status_code == 200
    assert api().get("/api/v1/sync/status", **bearer(handheld.token)).status_code == 200

    admin_form_post(desk_session("admin"), f"/admin/warden_app/user/{supervisor.pk}/change/", is_active=False)
    supervisor.refresh_from_db()
    assert supervisor.is_active is False

    assert shows_sign_in(desk.get("/review/"))
    assert api().get(RECORDS, **bearer(token)).status_code == 401
    assert api().get("/api/v1/sync/status", **bearer(handheld.token)).status_code == 401
    assert api().get(RECORDS, **basic("supervisor_leigh")).status_code == 401
    # And the desk's form does not sign them in again.
    again = Client(REMOTE_ADDR=fresh_address()).post("/review/login/", {"username": "supervisor_leigh",
                                                                         "password": PASSWORD})
    assert again.status_code == 200 and "_auth_user_id" not in again.client.session


# --- the owner lists and revokes; nobody else ------------------------------------------------

def test_the_owner_lists_their_tokens_without_secrets_and_nobody_elses(world):
    own_id, own = make_token("analyst", "QGIS laptop")
    other_id, _ = make_token("supervisor_leigh", "desk pc")
    response = api().get("/api/v1/tokens", **bearer(own))
    assert response.status_code == 200
    tokens = response.json()["tokens"]
    assert [t["id"] for t in tokens] == [own_id]
    listed = tokens[0]
    assert set(listed) == {"id", "name", "prefix", "state", "created_at", "expires_at", "last_used_at", "revoked_at"}
    assert listed["name"] == "QGIS laptop" and own.startswith(listed["prefix"]) and len(listed["prefix"]) == 10
    assert listed["state"] == "active" and listed["last_used_at"]
    assert own not in response.content.decode() and other_id not in [t["id"] for t in tokens]


def test_the_owner_revokes_their_token_and_cannot_touch_anyone_elses(world):
    own_id, own = make_token("analyst")
    other_id, other = make_token("supervisor_leigh")
    # Someone else's id answers as one that does not exist, and the token keeps working.
    refused = api().delete(f"/api/v1/tokens/{other_id}", **basic("analyst"))
    assert refused.status_code == 404 and refused.json()["code"] == "not_found"
    assert api().delete("/api/v1/tokens/999999999", **basic("analyst")).status_code == 404
    assert api().delete("/api/v1/tokens/99999999999999999999999", **basic("analyst")).status_code == 404
    assert api().get(RECORDS, **bearer(other)).status_code == 200
    # A script revokes the token it holds.
    revoked = api().delete(f"/api/v1/tokens/{own_id}", **bearer(own))
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    assert api().get(RECORDS, **bearer(own)).status_code == 401


def test_a_token_cannot_make_tokens(world):
    _, token = make_token("analyst")
    response = api().post("/api/v1/tokens", json.dumps({"name": "successor"}), content_type="application/json",
                          **bearer(token))
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    assert len(api().get("/api/v1/tokens", **bearer(token)).json()["tokens"]) == 1


def test_bad_token_names_are_400_and_make_nothing(world):
    for body in ('{"name": 5}', '{"name": "' + "x" * 121 + '"}', '["qgis"]', '{"name": "a\\u0000b"}'):
        response = api().post("/api/v1/tokens", body, content_type="application/json", **basic("analyst"))
        assert response.status_code == 400 and set(response.json()) == {"code", "message", "fields"}, body
    assert api().get("/api/v1/tokens", **basic("analyst")).json()["tokens"] == []


def test_the_desk_page_makes_shows_once_and_revokes_with_csrf(world):
    """Any signed-in user (an analyst is not a supervisor) has the page; the new token is
    shown on the answer to the POST only; revoking is a CSRF-protected POST, and another
    user's token id is 404."""
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=fresh_address())
    page = client.get("/review/login/")
    csrf = page.cookies["csrftoken"].value
    assert client.post("/review/login/", {"username": "analyst", "password": PASSWORD,
                                          "csrfmiddlewaretoken": csrf}).status_code == 302
    csrf = client.cookies["csrftoken"].value
    assert client.post("/review/tokens/", {"name": "laptop"}).status_code == 403  # no CSRF token
    made = client.post("/review/tokens/", {"name": "laptop", "csrfmiddlewaretoken": csrf})
    assert made.status_code == 200 and made["Cache-Control"].startswith("max-age=0")
    token = made.context["created"]
    assert token.startswith("fsp_") and token.encode() in made.content
    assert api().get(RECORDS, **bearer(token)).status_code == 200
    listing = client.get("/review/tokens/")
    assert listing.status_code == 200 and b"laptop" in listing.content and token.encode() not in listing.content
    row_id = listing.context["tokens"][0][0].id

    other_id, other = make_token("supervisor_leigh")
    assert client.post(f"/review/tokens/{other_id}/revoke", {"csrfmiddlewaretoken": csrf}).status_code == 404
    assert api().get(RECORDS, **bearer(other)).status_code == 200
    assert client.post(f"/review/tokens/{row_id}/revoke").status_code == 403  # no CSRF token
    assert api().get(RECORDS, **bearer(token)).status_code == 200
    revoked = client.post(f"/review/tokens/{row_id}/revoke", {"csrfmiddlewaretoken": csrf})
    assert revoked.status_code == 302
    assert api().get(RECORDS, **bearer(token)).status_code == 401
    assert Client().get("/review/tokens/")["Location"].startswith("/review/login/")
