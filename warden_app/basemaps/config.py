"""The one description of the base map that every page's map reads (static/site/map.js)."""
from __future__ import annotations

from django.conf import settings


def map_config() -> dict:
    """`tiles`: None when there is no base map, so a map draws its vectors on a plain ground
    and says so, rather than an empty grey square."""
    tiles = None
    if settings.TILE_URL:
        tiles = {"url": settings.TILE_URL, "attribution": settings.TILE_ATTRIBUTION, "kind": "raster",
                 "min_zoom": 0, "max_zoom": 19}
    return {"tiles": tiles, "home": {"lat": 53.52, "lng": -2.58, "zoom": 12}}
