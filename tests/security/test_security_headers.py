"""Security headers on the HTML pages and the API, the Content-Security-Policy against the
pages' own markup, HSTS under FIELDSYNC_HTTPS, and the session and CSRF cookies.

The CSP is checked two ways: here, that every inline script a page has carries the nonce of
the header it came with (and that pages under the strict policy have none); and in a real
browser by tests/e2e (the admin's map, the desk, the handheld), which fail on any CSP report.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def csp(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


class Markup(HTMLParser):
    """Inline scripts (executable ones: JSON data blocks do not run) and inline styles."""

    def __init__(self):
        super().__init__()
        self.inline_scripts: list[dict] = []
        self.style_elements = 0
        self.style_attributes = 0
        self.event_handlers: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and "src" not in attrs and attrs.get("type") not in ("application/json", "importmap"):
            self.inline_scripts.append(attrs)
        if tag == "style":
            self.style_elements += 1
        if "style" in attrs:
            self.style_attributes += 1
        self.event_handlers += [name for name in attrs if name.startswith("on")]


def markup(response) -> Markup:
    parser = Markup()
    parser.feed(response.content.decode())
    return parser


def pages(world) -> dict[str, tuple[Client, str]]:
    p, r = world.principals, world.records
    area = world.analysis.demo.areas["LEIGH-TC"].pk
    return {
        "handheld shell": (p["anonymous"].client(), "/warden/"),
        "desk login": (p["anonymous"].client(), "/review/login/"),
        "desk queue": (p["supervisor"].client(), "/review/"),
        "desk record (map)": (p["supervisor"].client(), f"/review/records/observation/{r['council_leigh']}/"),
        "desk devices": (p["supervisor"].client(), "/review/devices/"),
        "admin login": (p["anonymous"].client(), "/admin/login/"),
        "admin index": (p["admin"].client(), "/admin/"),
        "admin area (map widget)": (p["admin"].client(), f"/admin/warden_app/area/{area}/change/"),
        "admin observation (map)": (p["admin"].client(), f"/admin/warden_app/observation/{r['council_leigh']}/change/"),
        "admin user": (p["admin"].client(), f"/admin/warden_app/user/{world.users['warden_leigh'].pk}/change/"),
    }


def api_answers(world) -> dict[str, object]:
    p, r = world.principals, world.records
    warden = p["warden"]
    analyst = p["analyst"].client(session=False, authorization=p["analyst"].basic)
    device = warden.client(session=False, authorization=f"Bearer {warden.device_token}")
    return {
        "records": analyst.get("/api/v1/records/observation"),
        "record 404": analyst.get("/api/v1/records/observation/00000000-0000-0000-0000-000000000000"),
        "ogc": analyst.get("/ogc/collections/observations/items"),
        "pull": device.get("/api/v1/sync/pull"),
        "unauthenticated": Client().get("/api/v1/sync/pull"),
        "no such endpoint": Client().get("/api/v1/nothing"),
        "desk photo": p["supervisor"].client().get(
            f"/review/records/observation/{r['photo_leigh']}/photos/{world.ids['photo_leigh']}"),
        "manifest": Client().get("/warden/manifest.webmanifest"),
    }


COMMON = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def test_html_pages_carry_the_headers_and_a_policy_their_markup_keeps_to(sec_world):
    for name, (client, path) in pages(sec_world).items():
        response = client.get(path)
        assert response.status_code == 200, (name, response.status_code)
        for header, value in COMMON.items():
            assert response.get(header) == value, (name, header, response.get(header))
        permissions = response["Permissions-Policy"]
        assert "geolocation=(self)" in permissions and "camera=(self)" in permissions, name
        assert "microphone=()" in permissions, name

        policy = csp(response)
        assert policy["default-src"] == ["'self'"], name
        assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"], name
        assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"], name
        assert "'unsafe-inline'" not in policy.get("style-src", []), name
        assert {"'self'", "data:", "blob:"} <= set(policy["img-src"]), name

        found = markup(response)
        assert not found.event_handlers, (name, found.event_handlers)  # onclick= etc. never run under it
        assert not found.style_elements and not found.style_attributes, (name, "inline style")
        nonces = [v[len("'nonce-"):-1] for v in policy["script-src"] if v.startswith("'nonce-")]
        if path.startswith("/admin/"):
            # django-leaflet's set-up scripts carry the request's nonce; nothing else is inline.
            assert len(nonces) == 1, name
            assert all(attrs.get("nonce") == nonces[0] for attrs in found.inline_scripts), (name, found.inline_scripts)
        else:
            assert not nonces and not found.inline_scripts, (name, found.inline_scripts)

    # The map widget really is there with its inline scripts (else the nonce proves nothing).
    client, path = pages(sec_world)["admin area (map widget)"]
    first, second = client.get(path), client.get(path)
    assert len(markup(first).inline_scripts) >= 2
    assert csp(first)["script-src"] != csp(second)["script-src"], "a nonce must not repeat"


def test_api_answers_carry_the_headers_and_a_policy_that_loads_nothing(sec_world):
    for name, response in api_answers(sec_world).items():
        for header, value in COMMON.items():
            assert response.get(header) == value, (name, header, response.get(header))
        policy = csp(response)
        assert policy["default-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"], (name, policy)
        assert "Permissions-Policy" in response, name


def test_the_api_docs_are_the_one_place_inline_script_is_allowed(sec_world):
    """drf-spectacular's Swagger UI and our Redoc page inline their start-up code (and Redoc
    its styles): allowed there, and only there; framing and plugins stay off."""
    for path in ("/api/docs/", "/api/redoc/"):
        response = Client().get(path)
        policy = csp(response)
        assert "'unsafe-inline'" in policy["script-src"] and "'unsafe-inline'" in policy["style-src"], path
        assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"], path
        assert policy["connect-src"] == ["'self'"], path


def test_the_handhelds_own_policy_is_kept(sec_world):
    """The handheld's views set their policy themselves (the service worker's is narrower)."""
    from warden_app.handheld.views import content_security_policy

    assert Client().get("/warden/")["Content-Security-Policy"] == content_security_policy()
    assert Client().get("/warden/sw.js")["Content-Security-Policy"] == "default-src 'self'"


@override_settings(TILE_URL="https://{s}.tiles.example.org/{z}/{x}/{y}.png")
def test_the_tile_server_is_allowed_for_images_only(sec_world):
    client = sec_world.principals["supervisor"].client()
    page = client.get(f"/review/records/observation/{sec_world.records['council_leigh']}/")
    policy = csp(page)
    assert "https://*.tiles.example.org" in policy["img-src"]
    assert all("tiles.example.org" not in " ".join(v) for k, v in policy.items() if k != "img-src")
    admin = sec_world.principals["admin"].client().get("/admin/")
    assert "https://*.tiles.example.org" in csp(admin)["img-src"]


def test_hsts_and_https_only_cookies_when_fieldsync_https_is_on():
    """settings.py is environment-driven: read it in a fresh interpreter both ways."""
    script = ("import json, fieldsync.settings as s; print(json.dumps({k: getattr(s, k) for k in ("
              "'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_SSL_REDIRECT', "
              "'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SESSION_COOKIE_HTTPONLY', "
              "'SESSION_COOKIE_SAMESITE', 'CSRF_COOKIE_SAMESITE', 'LOGIN_FAILURE_LIMIT', 'LOGIN_FAILURE_WINDOW')}))")

    def read(**env) -> dict:
        environment = {**os.environ, "SECRET_KEY": "x" * 50, **env}
        environment.pop("DEBUG", None)
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True,
                              text=True, check=True)
        return json.loads(done.stdout)

    on = read(FIELDSYNC_HTTPS="true", LOGIN_FAILURE_LIMIT="7", LOGIN_FAILURE_WINDOW="60")
    assert on["SECURE_HSTS_SECONDS"] >= 31536000 and on["SECURE_HSTS_INCLUDE_SUBDOMAINS"]
    assert on["SECURE_SSL_REDIRECT"] and on["SESSION_COOKIE_SECURE"] and on["CSRF_COOKIE_SECURE"]
    assert on["SESSION_COOKIE_HTTPONLY"] and on["SESSION_COOKIE_SAMESITE"] == on["CSRF_COOKIE_SAMESITE"] == "Lax"
    assert (on["LOGIN_FAILURE_LIMIT"], on["LOGIN_FAILURE_WINDOW"]) == (7, 60)
    off = read(FIELDSYNC_HTTPS="false")
    assert off["SECURE_HSTS_SECONDS"] == 0 and not off["SESSION_COOKIE_SECURE"] and not off["SECURE_SSL_REDIRECT"]


@override_settings(SECURE_HSTS_SECONDS=31536000, SECURE_HSTS_INCLUDE_SUBDOMAINS=True, SECURE_HSTS_PRELOAD=True,
                   SESSION_COOKIE_SECURE=True, CSRF_COOKIE_SECURE=True, SECURE_SSL_REDIRECT=True)
def test_over_https_answers_carry_hsts_and_cookies_are_secure(demo_users):
    client = Client(REMOTE_ADDR="192.0.2.44")
    assert client.get("/review/login/").status_code == 301  # plain http is sent to https
    login = client.get("/review/login/", secure=True)
    assert login["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    response = client.post("/review/login/", {"username": "supervisor_leigh", "password": "fieldsync-demo"},
                           secure=True)
    assert response.status_code == 302
    session, csrf = response.cookies["sessionid"], client.cookies["csrftoken"]
    assert session["secure"] and session["httponly"] and session["samesite"] == "Lax"
    assert csrf["secure"] and csrf["samesite"] == "Lax"
    api = Client().get("/api/v1/sync/pull", secure=True)
    assert api["Strict-Transport-Security"].startswith("max-age=31536000")


def test_without_https_there_is_no_hsts_and_cookies_are_still_httponly_and_lax(demo_users):
    client = Client(REMOTE_ADDR="192.0.2.45")
    response = client.post("/review/login/", {"username": "supervisor_leigh", "password": "fieldsync-demo"})
    assert "Strict-Transport-Security" not in response
    session = response.cookies["sessionid"]
    assert session["httponly"] and session["samesite"] == "Lax"


@pytest.fixture
def demo_users(db, own_cache):
    from warden_app.services.demo import demo_seed

    return demo_seed()


def test_no_template_of_ours_brings_inline_script_back():
    """A template change that adds an inline <script> or on…= handler would be refused by the
    browser under the policy; catch it here, before tests/e2e does."""
    offenders = []
    for template in (ROOT / "warden_app" / "templates").rglob("*.html"):
        if template.parent.name == "api_docs":
            continue  # the documented exception (security_headers.DOCS_PATHS)
        text = template.read_text()
        for match in re.finditer(r"<script(?![^>]*\bsrc=)[^>]*>", text):
            offenders.append(f"{template.name}: {match.group(0)}")
        offenders += [f"{template.name}: handler {m.group(0)}" for m in re.finditer(r"\son[a-z]+=", text)]
        offenders += [f"{template.name}: style attribute" for _ in re.finditer(r"\sstyle=", text)]
    assert not offenders, offenders
