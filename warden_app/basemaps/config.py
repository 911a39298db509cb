"""The one description of the base map that every page's map reads (static/site/map.js), the
handheld included (its shell config and service worker).

Precedence: the imported base map in use (`manage.py import_basemap`, served by fieldsync at
/tiles/<version>/…) wins over TILE_URL (an external tile server); with neither, `tiles` is
None and maps draw outlines, boundaries and records on a plain ground and say so.
"""
from __future__ import annotations

from django.conf import settings
from django.templatetags.static import static

from .store import active_basemap

VECTOR_RENDERER = "vendor/leaflet-vectorgrid/Leaflet.VectorGrid.bundled.min.js"
HOME = {"lat": 53.52, "lng": -2.58, "zoom": 12}


def imported_tiles() -> dict | None:
    basemap = active_basemap()
    if basemap is None:
        return None
    west, south, east, north = basemap.bounds
    lon, lat, zoom = basemap.center
    tiles = {
        "url": f"/tiles/{basemap.version}/{{z}}/{{x}}/{{y}}.{basemap.tile_type}",
        "kind": basemap.kind,
        "attribution": basemap.attribution,
        "min_zoom": basemap.min_zoom,
        "max_zoom": basemap.max_zoom,
        "bounds": [west, south, east, north],
        "center": {"lat": lat, "lng": lon, "zoom": zoom},
        "version": basemap.version,
        "name": basemap.name,
        "local": True,
    }
    if basemap.kind == "vector":
        tiles["layers"] = basemap.vector_layers
        tiles["renderer"] = static(VECTOR_RENDERER)
    return tiles


def external_tile_url() -> str:
    """TILE_URL when it is the base map in use (no imported one), else "" (also for the CSP)."""
    if settings.TILE_URL and active_basemap() is None:
        return settings.TILE_URL
    return ""


def map_config() -> dict:
    """`tiles`: None when there is no base map, so a map draws its vectors on a plain ground
    and says so, rather than an empty grey square."""
    tiles = imported_tiles()
    if tiles is None and settings.TILE_URL:
        tiles = {"url": settings.TILE_URL, "attribution": settings.TILE_ATTRIBUTION, "kind": "raster",
                 "min_zoom": 0, "max_zoom": 19, "version": None, "local": False}
    return {"tiles": tiles, "home": HOME}
