"""The imported base map's tiles: /tiles/<version>/<z>/<x>/<y>.<ext>, for anyone.

Who may fetch: anyone, signed in or not. Base-map geography (streets, buildings, water) is
not personal data and says nothing about records, and the handheld's map and its service
worker must fetch tiles without a session (the handheld holds only a device token, which an
<img> cannot send). The archive's licence must allow this (OS Open Zoomstack and OpenStreetMap
do); docs/maps.md says so.

The version is the archive's content hash, so a URL's bytes never change: a year's
immutable Cache-Control and an ETag. Coordinates are parsed strictly (ASCII digits, no sign,
no leading zero, within the zoom's grid): anything else is a 400, never a 500.
"""
from __future__ import annotations

import re

from django.http import HttpResponse, HttpResponseNotModified
from django.views.decorators.http import require_safe

from .archives import TILE_TYPES, ArchiveError, tile_is_gzipped
from .store import archive_of, basemap_by_version

VERSION_RE = re.compile(r"[0-9a-f]{16}")
NUMBER_RE = re.compile(r"0|[1-9][0-9]{0,9}")
EXT_RE = re.compile(r"[a-z]{3,4}")
EXTENSIONS = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp", "pbf": "pbf", "mvt": "pbf"}
IMMUTABLE = "public, max-age=31536000, immutable"


def _plain(status: int, text: str) -> HttpResponse:
    response = HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


@require_safe
def tile(request, version: str, z: str, x: str, name: str):
    y, dot, ext = name.partition(".")
    if not (NUMBER_RE.fullmatch(z) and NUMBER_RE.fullmatch(x) and NUMBER_RE.fullmatch(y) and dot
            and EXT_RE.fullmatch(ext)):
        return _plain(400, "Tile coordinates are whole numbers: /tiles/<version>/<z>/<x>/<y>.<ext>.")
    zi, xi, yi = int(z), int(x), int(y)
    if zi > 30 or xi >= 1 << zi or yi >= 1 << zi:
        return _plain(400, f"No tile {z}/{x}/{y}: at zoom {z} x and y run from 0 to {(1 << min(zi, 30)) - 1}.")
    if not VERSION_RE.fullmatch(version):
        return _plain(404, "No such base map.")
    basemap = basemap_by_version(version)
    if basemap is None or EXTENSIONS.get(ext) != basemap.tile_type:
        return _plain(404, "No such base map.")
    etag = f'"{basemap.version}-{zi}-{xi}-{yi}"'
    if etag in request.headers.get("If-None-Match", ""):
        response = HttpResponseNotModified()
        response["ETag"] = etag
        response["Cache-Control"] = IMMUTABLE
        return response
    try:
        archive = archive_of(basemap)
        data = archive.tile(zi, xi, yi) if basemap.min_zoom <= zi <= basemap.max_zoom else None
    except (ArchiveError, OSError):
        return _plain(404, "This base map's file cannot be read on this server: import it again.")
    if data is None:
        # Inside the grid but not in the archive (sea, outside its area): nothing to draw,
        # which browsers take quietly, where a 404 would be logged as an error on every map.
        response = HttpResponse(status=204)
    else:
        response = HttpResponse(data, content_type=TILE_TYPES[basemap.tile_type])
        if basemap.tile_type == "pbf" and tile_is_gzipped(archive, data):
            response["Content-Encoding"] = "gzip"
    response["Cache-Control"] = IMMUTABLE
    response["ETag"] = etag
    return response
