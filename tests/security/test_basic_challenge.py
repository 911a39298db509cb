"""Every API endpoint that takes HTTP Basic answers a caller without good credentials 401 with a
`WWW-Authenticate: Basic` challenge, in the protocol's error shape: the request QGIS, GDAL or
curl sends first carries no credentials, and only a challenge makes them ask for a password.

The endpoints are found by walking the URL map (every DRF view with a Basic authenticator), so
a new one is held to this too. Before the fix the aggregates, DPO and escalation APIs tried the
session first and answered 403 with no challenge, and revoke challenged Bearer alone.
"""
from __future__ import annotations

import base64
import re
import uuid

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.authentication import BasicAuthentication
from rest_framework.views import APIView

from .conftest import fresh_address

PASSWORD = "fieldsync-demo"
# Public documentation: it answers without credentials, but a wrong password is still refused.
PUBLIC = ("api/schema/", "api/docs/", "api/redoc/")
PLACEHOLDER = {"uuid": lambda: str(uuid.uuid4()), "int": lambda: "1"}
NAMED = {"record_type": "observation", "collection_id": "observation"}


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def basic_endpoints() -> list[tuple[str, str]]:
    """(method, path) for every DRF view that accepts Basic, its path filled with stand-ins."""
    found = []
    for route, entry in _walk(get_resolver().url_patterns):
        view = getattr(entry.callback, "cls", None)
        if not (isinstance(view, type) and issubclass(view, APIView)):
            continue
        if not any(issubclass(a, BasicAuthentication) for a in view.authentication_classes):
            continue

        def fill(match):
            converter, name = match.group(1) or "str", match.group(2)
            return NAMED.get(name) or PLACEHOLDER.get(converter, lambda: "x")()

        path = "/" + re.sub(r"<(?:(\w+):)?(\w+)>", fill, route)
        for method in ("get", "post", "patch", "put", "delete"):
            if hasattr(view, method):
                found.append((method, path))
    return found


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def send(method: str, path: str, authorization: str | None = None):
    client = Client(REMOTE_ADDR=fresh_address())
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    if method in ("post", "patch", "put"):
        return getattr(client, method)(path, "{}", content_type="application/json", **extra)
    return getattr(client, method)(path, **extra)


def assert_challenged(response, where, *, shape=True):
    assert response.status_code == 401, (where, response.status_code, response.content[:200])
    challenge = response.get("WWW-Authenticate", "")
    assert challenge.startswith('Basic realm="fieldsync"'), (where, challenge)
    if not shape:  # drf-spectacular's own views (the documentation) answer in its shape
        return
    body = response.json()
    assert set(body) >= {"code", "message", "fields"}, (where, body)
    assert body["code"] == "not_authenticated", (where, body)


@pytest.fixture
def demo(db, own_cache):
    from warden_app.services.demo import demo_seed

    return demo_seed(password=PASSWORD)


def test_the_walk_finds_the_endpoints_that_had_no_challenge():
    paths = {path for _, path in basic_endpoints()}
    for expected in ("/api/v1/aggregates/counts", "/api/v1/dpo/access-log", "/api/v1/escalations",
                     "/api/v1/escalations/endpoints", "/api/v1/records/observation", "/ogc/collections"):
        assert expected in paths
    assert any(p.startswith("/api/v1/devices/") and p.endswith("/revoke") for p in paths)


def test_no_credentials_get_a_basic_challenge(demo):
    for method, path in basic_endpoints():
        if path.lstrip("/") in PUBLIC:
            continue
        assert_challenged(send(method, path), (method, path, "no credentials"))


def test_a_wrong_password_gets_a_basic_challenge(demo, settings):
    # Many guesses at one username: the login guard's slow-down (429) is another test's.
    settings.LOGIN_FAILURE_LIMIT = 1000
    wrong = basic("analyst", "not-the-password")
    for method, path in basic_endpoints():
        assert_challenged(send(method, path, wrong), (method, path, "wrong password"),
                          shape=path.lstrip("/") not in PUBLIC)


def test_an_unknown_api_token_gets_a_basic_challenge_too(demo):
    """A bearer token nobody issued: refused where tokens are taken, not taken elsewhere; both
    answer 401 and offer Basic."""
    for method, path in basic_endpoints():
        if path.lstrip("/") in PUBLIC:
            continue
        assert_challenged(send(method, path, "Bearer fsp_nobody-issued-this"), (method, path, "unknown token"))


def test_revoke_offers_basic_and_the_device_token(demo):
    response = send("post", f"/api/v1/devices/{uuid.uuid4()}/revoke")
    assert_challenged(response, "revoke")
    assert 'Bearer realm="fieldsync"' in response["WWW-Authenticate"]


def test_good_credentials_still_open_them(demo):
    """The challenge is for the unauthenticated only: the right password or a live token is let in."""
    from warden_app.models import User
    from warden_app.services.api_tokens import api_token_create

    assert send("get", "/api/v1/aggregates/boundary-sets", basic("partner_fire", PASSWORD)).status_code == 200
    assert send("get", "/api/v1/dpo/access-log", basic("dpo", PASSWORD)).status_code == 200
    assert send("get", "/api/v1/escalations/endpoints", basic("analyst", PASSWORD)).status_code == 200
    _, token = api_token_create(user=User.objects.get(username="analyst"))
    assert send("get", "/api/v1/records/observation", f"Bearer {token}").status_code == 200
    # Signed in but without the right: 403, not a challenge (a password would not help).
    refused = send("get", "/api/v1/dpo/access-log", basic("analyst", PASSWORD))
    assert refused.status_code == 403 and "WWW-Authenticate" not in refused
    assert refused.json()["code"] == "permission_denied"
