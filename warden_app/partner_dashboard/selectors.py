"""What the partner dashboard shows for one choice: the aggregates API's partner outputs, and
the areas' outlines to draw them on.

The figures come from the aggregates selectors' partner functions (`partner_counts`,
`partner_hotspots`), the same calls the API's views make, so the page can never show more
than the API would give the same person; what is added here — outlines, colour bands, each
area's highest hotspot class — is computed from those published outputs and the public
boundaries only. Like the API, nothing here is personal data, so no consultation is logged
(docs/disclosure.md, "The partner dashboard").
"""
from __future__ import annotations

from dataclasses import dataclass

import orjson
from django.db import connections

from ..aggregates import selectors as aggregates
from ..aggregates.disclosure import HOTSPOT_CLASSES
from ..aggregates.params import PartnerQuery
from ..models import Area
from ..models.areas import BNG_SRID
from .choropleth import CLASS_COLOURS, CLASS_LABELS, Band, band_of, count_bands

# Outlines are drawn, not measured: simplified by 2 m on the British National Grid, written
# to 6 decimals of a degree (about 10 cm), to keep a page of many small areas light.
OUTLINE_TOLERANCE_M = 2.0
OUTLINE_DECIMALS = 6
WGS84_SRID = 4326
# Square metres a hotspot cell (50 m x 50 m by default) must share with an area to be in it.
MIN_SHARED_M2 = 1.0


@dataclass(frozen=True)
class AreaFigure:
    """One area of the set as the page shows it: a published count or None (withheld)."""

    code: str
    name: str
    count: int | None
    band: Band | None
    hotspot_class: str | None  # the highest class of a hotspot cell inside it, if any

    @property
    def hotspot_label(self) -> str | None:
        return CLASS_LABELS[self.hotspot_class] if self.hotspot_class else None


@dataclass(frozen=True)
class Dashboard:
    areas: list[AreaFigure]
    bands: list[Band]
    # Embedded in the page for the maps: only published values, classes and outlines.
    map_data: dict

    @property
    def withheld(self) -> list[AreaFigure]:
        return [area for area in self.areas if area.count is None]

    @property
    def published(self) -> list[AreaFigure]:
        return [area for area in self.areas if area.count is not None]


def dashboard_read(query: PartnerQuery, *, using: str = "default") -> Dashboard:
    counts = aggregates.partner_counts(
        boundary_set=query.boundary_set, family_set_ids=query.family_set_ids,
        record_type=query.record_type, period=query.period, using=using,
    )
    hotspots = aggregates.partner_hotspots(
        boundary_set=query.boundary_set, family_set_ids=query.family_set_ids,
        record_type=query.record_type, period=query.period, using=using,
    )
    bands = count_bands([row.count for row in counts if row.count is not None])
    highest = highest_class_by_area(boundary_set_id=query.boundary_set.pk, features=hotspots.features, using=using)
    outlines = area_outlines(boundary_set_id=query.boundary_set.pk, using=using)
    figures, features = [], []
    for row in sorted(counts, key=lambda r: (r.area.name.casefold(), r.area.code)):
        count = None if row.suppressed else row.count
        band = band_of(count, bands)
        figure = AreaFigure(
            code=row.area.code, name=row.area.name, count=count, band=band,
            # A withheld area is left out of the hotspot map altogether (the API's rule).
            hotspot_class=None if count is None else highest.get(row.area.id),
        )
        figures.append(figure)
        if row.area.id in outlines:
            features.append({"type": "Feature", "geometry": outlines[row.area.id], "properties": {
                "name": figure.name, "code": figure.code, "count": figure.count,
                "band": band.key if band else None, "hotspot": figure.hotspot_label,
            }})
    return Dashboard(areas=figures, bands=bands, map_data={
        "areas": {"type": "FeatureCollection", "features": features},
        "hotspots": {"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": geometry, "properties": {"class": cls}}
            for geometry, cls in hotspots.features
        ]},
        "bands": {band.key: band.colour for band in bands},
        "classes": CLASS_COLOURS,
    })


def area_outlines(*, boundary_set_id: int, using: str = "default") -> dict[int, dict]:
    """Each area's outline as a GeoJSON geometry (EPSG:4326), simplified for drawing."""
    sql = (
        "SELECT id, ST_AsGeoJSON(ST_Transform(ST_SimplifyPreserveTopology(geom_bng, %(tolerance)s), %(wgs84)s), "
        f"%(decimals)s) FROM {Area._meta.db_table} WHERE boundary_set_id = %(set)s"
    )
    params = {"tolerance": OUTLINE_TOLERANCE_M, "wgs84": WGS84_SRID, "decimals": OUTLINE_DECIMALS,
              "set": boundary_set_id}
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        return {area_id: orjson.loads(geometry) for area_id, geometry in cursor.fetchall() if geometry}


def highest_class_by_area(
    *, boundary_set_id: int, features: list[tuple[dict, str]], using: str = "default"
) -> dict[int, str]:
    """For each area of the set, the highest class among the published hotspot cells that
    share more than MIN_SHARED_M2 with it: a cell clipped at a neighbour's edge comes back
    from its 7 decimals with slivers of millimetres across the edge, which are not "in" the
    neighbour. The table's words for what the hotspot map shows."""
    if not features:
        return {}
    cells = orjson.dumps([
        {"k": HOTSPOT_CLASSES.index(cls), "g": geometry} for geometry, cls in features
    ]).decode()
    sql = (
        "WITH c AS (SELECT (e->>'k')::int AS k, "
        "  ST_Transform(ST_SetSRID(ST_GeomFromGeoJSON(e->'g'), %(wgs84)s), %(bng)s) AS g "
        "  FROM jsonb_array_elements(%(cells)s::jsonb) e) "
        f"SELECT a.id, max(c.k) FROM {Area._meta.db_table} a JOIN c ON a.geom_bng && c.g "
        "AND ST_Area(ST_Intersection(a.geom_bng, c.g)) > %(min_shared)s WHERE a.boundary_set_id = %(set)s GROUP BY a.id"
    )
    params = {"cells": cells, "wgs84": WGS84_SRID, "bng": BNG_SRID, "set": boundary_set_id,
              "min_shared": MIN_SHARED_M2}
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        return {area_id: HOTSPOT_CLASSES[k] for area_id, k in cursor.fetchall()}
