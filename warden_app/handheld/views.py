"""The warden's handheld app: its shell page, web app manifest and service worker.

Nothing here reads or renders data. The shell loads without a login; everything the app
shows comes through the sync API (docs/sync.md) with the device token, and is kept on the
handheld encrypted under a key derived from the user's PIN (see static/handheld/js/vault.js).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.staticfiles import finders
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_GET

from ..basemaps.config import VECTOR_RENDERER, external_tile_url, map_config
from ..choices import (
    GRADED_ISSUE_TYPES,
    ActionTaken,
    FixSource,
    Grade,
    IncidentType,
    IssueType,
    Qualifier,
    ReviewState,
)

SCOPE = "/warden/"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "handheld"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "handheld"
# The parts of django-leaflet and the site the app uses (the site's map module and the vector
# renderer it loads); the app itself is every file under static/handheld/.
LEAFLET_ASSETS = (
    "site/map.js",
    VECTOR_RENDERER,
    "leaflet/leaflet.js",
    "leaflet/leaflet.css",
    "leaflet/images/marker-icon.png",
    "leaflet/images/marker-icon-2x.png",
    "leaflet/images/marker-shadow.png",
    "leaflet/images/layers.png",
    "leaflet/images/layers-2x.png",
)


def _app_assets() -> list[str]:
    """Static paths (relative to STATIC_URL) of the app's own files."""
    return sorted(
        "handheld/" + path.relative_to(STATIC_DIR).as_posix()
        for path in STATIC_DIR.rglob("*")
        if path.is_file() and not path.name.startswith(".")
    )


def _assets() -> list[str]:
    return [*_app_assets(), *LEAFLET_ASSETS]


def _tile_zooms() -> list[int]:
    zooms = [int(z) for z in str(settings.HANDHELD_TILE_ZOOMS).split("-")]
    return [zooms[0], zooms[-1]]


def _policy() -> dict:
    return {
        "idleLockMinutes": float(getattr(settings, "HANDHELD_IDLE_LOCK_MINUTES", 5)),
        "maxDaysWithoutSync": float(getattr(settings, "HANDHELD_MAX_DAYS_WITHOUT_SYNC", 7)),
        # The offline map: which zooms of the base map to keep for the user's areas, and the cap.
        "tileZooms": _tile_zooms(),
        "tileMax": int(settings.HANDHELD_TILE_MAX),
    }


def _version() -> str:
    """Changes whenever a cached file, the templates or the policy change, so the service
    worker is replaced and its cache rebuilt."""
    digest = hashlib.sha256()
    for name in _assets():
        found = finders.find(name)
        if found:
            digest.update(name.encode())
            digest.update(Path(found).read_bytes())
    for template in sorted(TEMPLATES.glob("*")):
        digest.update(template.read_bytes())
    # The base map's description too: a new one replaces the worker, which drops the old tiles.
    digest.update(json.dumps([_policy(), map_config(), settings.STATIC_URL], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _tile_origin() -> str:
    """Origin of the external tile server in use for the CSP (`{s}` subdomains as a wildcard);
    none for an imported base map, which is served from 'self'."""
    tile_url = external_tile_url()
    if not tile_url:
        return ""
    parts = urlsplit(tile_url.replace("{s}", "tiles-sub"))
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return ""
    host = parts.netloc.replace("tiles-sub", "*")
    return f"{parts.scheme}://{host}"


def content_security_policy() -> str:
    tiles = _tile_origin()
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        f"img-src 'self' data: blob:{' ' + tiles if tiles else ''}",
        "connect-src 'self'",
        "worker-src 'self'",
        "manifest-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def _secure(response: HttpResponse) -> HttpResponse:
    response["Content-Security-Policy"] = content_security_policy()
    response["Cache-Control"] = "no-cache"
    response["Permissions-Policy"] = "geolocation=(self), camera=(self), microphone=()"
    return response


def _labels() -> dict:
    return {
        "qualifier": dict(Qualifier.choices),
        "incident_type": dict(IncidentType.choices),
        "action_taken": dict(ActionTaken.choices),
        "issue_type": dict(IssueType.choices),
        "grade": dict(Grade.choices),
        "fix_source": dict(FixSource.choices),
        "review_state": dict(ReviewState.choices),
        "type": {"observation": "Observation", "street_audit": "Street audit", "audit_item": "Audit item"},
    }


@require_GET
def shell(request):
    """The app shell: the same for everyone, cached by the service worker."""
    config = {
        "api": "/api/v1/",
        "scope": SCOPE,
        "swUrl": reverse("handheld-sw"),
        "version": _version(),
        "mapConfig": map_config(),
        "gradedDefault": list(GRADED_ISSUE_TYPES),
        "labels": _labels(),
        **_policy(),
    }
    return _secure(render(request, "handheld/app.html", {"config": config, "map_config": config["mapConfig"]}))


@require_GET
def manifest(request):
    body = {
        "name": "fieldsync warden",
        "short_name": "fieldsync",
        "description": "Record street audits and ASB observations, offline, and sync them.",
        "id": SCOPE,
        "start_url": SCOPE,
        "scope": SCOPE,
        "display": "standalone",
        "orientation": "portrait",
        "background_color": "#ffffff",
        "theme_color": "#0b4f6c",
        "icons": [
            {"src": static("handheld/icons/icon-192.png"), "sizes": "192x192", "type": "image/png",
             "purpose": "any"},
            {"src": static("handheld/icons/icon-512.png"), "sizes": "512x512", "type": "image/png",
             "purpose": "any"},
            {"src": static("handheld/icons/icon-maskable-512.png"), "sizes": "512x512", "type": "image/png",
             "purpose": "maskable"},
        ],
    }
    response = JsonResponse(body, content_type="application/manifest+json")
    response["Cache-Control"] = "no-cache"
    return response


@require_GET
def service_worker(request):
    """Served from /warden/ so its scope is the app; never cached long by the browser."""
    context = {
        "version": _version(),
        "scope": SCOPE,
        "shell": reverse("handheld-shell"),
        "precache": json.dumps(
            [reverse("handheld-shell"), reverse("handheld-manifest"), *(static(a) for a in _assets())]
        ),
    }
    response = render(request, "handheld/sw.js", context, content_type="text/javascript; charset=utf-8")
    response["Service-Worker-Allowed"] = SCOPE
    response["Content-Security-Policy"] = "default-src 'self'"
    response["Cache-Control"] = "no-cache"
    return response
