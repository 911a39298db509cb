"""Content-Security-Policy and Permissions-Policy on every response the app itself makes.

Django's SecurityMiddleware already sends nosniff, Referrer-Policy, Cross-Origin-Opener-Policy
and HSTS (settings.py), and XFrameOptionsMiddleware X-Frame-Options; Django 5.2 has no CSP of
its own. This middleware adds one policy per kind of response (docs/security.md):

- HTML pages: only this origin's scripts and styles, no inline script, images also from
  data:/blob: (photos taken on the handheld, Leaflet's icons) and the configured tile server
  (TILE_URL, only while no imported base map, served from 'self' at /tiles/, is in use).
- /admin/: the same plus a per-request nonce, which django-leaflet's admin widget puts on its
  inline map set-up script (LeafletGeoAdmin reads `request.csp_nonce`).
- /api/docs/ and /api/redoc/: drf-spectacular's Swagger UI and our Redoc page inline their
  start-up script and styles, and Redoc styles itself with injected <style> elements, so
  those two pages (the API's description, no data) allow inline script and style.
- anything else (JSON, GeoJSON, CSV, photos): nothing may load at all, so a response a browser
  is tricked into rendering as a document can run nothing.

A policy a view set itself (the handheld shell and its service worker) is left as it is.
Static files are served by WhiteNoise, which answers before this middleware is reached.
"""
from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.module_loading import import_string

# The handheld takes fixes and photos; nothing else may use a device feature.
PERMISSIONS_POLICY = "geolocation=(self), camera=(self), microphone=(), payment=(), usb=()"
DOCS_PATHS = ("/api/docs/", "/api/redoc/")
ADMIN_PATH = "/admin/"


def tile_origin(tile_url: str) -> str:
    """The origin of the configured tile server; `{s}` subdomains become a wildcard."""
    if not tile_url:
        return ""
    parts = urlsplit(tile_url.replace("{s}", "tiles-sub"))
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return ""
    return f"{parts.scheme}://{parts.netloc.replace('tiles-sub', '*')}"


def _join(directives: dict[str, str]) -> str:
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def _external_tile_url() -> str:
    """TILE_URL, unless the hook named by MAP_TILE_URL_IN_USE says an imported base map
    (served from 'self') is in use instead. A dotted path: this package imports no domain."""
    if not settings.TILE_URL:
        return ""
    hook = getattr(settings, "MAP_TILE_URL_IN_USE", "")
    return import_string(hook)() if hook else settings.TILE_URL


def page_policy(*, nonce: str = "", inline: bool = False) -> str:
    # The admin's map widget (django-leaflet) draws LEAFLET_CONFIG's tiles, always TILE_URL.
    tiles = tile_origin(settings.TILE_URL if nonce else _external_tile_url())
    script = "'self'"
    style = "'self'"
    if nonce:
        script += f" 'nonce-{nonce}'"
    if inline:
        script += " 'unsafe-inline'"
        style += " 'unsafe-inline'"
    return _join({
        "default-src": "'self'",
        "script-src": script,
        "style-src": style,
        "img-src": "'self' data: blob:" + (f" {tiles}" if tiles else ""),
        "font-src": "'self' data:" if inline else "'self'",
        "connect-src": "'self'",
        # Redoc builds its search worker from a blob: URL.
        "worker-src": "'self' blob:" if inline else "'self'",
        "manifest-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'self'" if inline else "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    })


# Nothing at all may load in a non-HTML response rendered as a document.
DATA_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        admin = request.path.startswith(ADMIN_PATH)
        if admin:
            # Read by django-leaflet's LeafletGeoAdmin when it builds a map widget.
            request.csp_nonce = secrets.token_urlsafe(18)
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self._policy(request, response, admin)
        if "Permissions-Policy" not in response:
            response["Permissions-Policy"] = PERMISSIONS_POLICY
        return response

    @staticmethod
    def _policy(request, response, admin: bool) -> str:
        content_type = response.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "text/html":
            return DATA_POLICY
        if settings.DEBUG and response.status_code >= 400:
            # Django's technical error pages (DEBUG only) inline their script and styles.
            return page_policy(inline=True)
        if admin:
            return page_policy(nonce=request.csp_nonce)
        if request.path.startswith(DOCS_PATHS):
            return page_policy(inline=True)
        return page_policy()
