"""Aggregate endpoints: counts by area and hotspot maps, for the partnership and its partners.

Thin views: who is asking (access), what they asked (params), the numbers (selectors), then
JSON. Aggregates hold no personal data, so no consultation is logged.
"""
from __future__ import annotations

import orjson
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.renderers import JSONRenderer

from fieldsync.api_views import ProtocolView

from . import disclosure, selectors
from .access import Audience, aggregate_audience
from .params import boundary_sets_for_partners, internal_query, partner_query

GEOJSON = "application/geo+json"
DEFAULT_DB = "default"


class CanViewAggregates(BasePermission):
    def has_permission(self, request, view) -> bool:
        return aggregate_audience(request.user) is not None


class FixedNegotiation(BaseContentNegotiation):
    """JSON always: `?format=` is a parameter like any other, refused to partners."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class AggregateView(ProtocolView):
    permission_classes = [IsAuthenticated, CanViewAggregates]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = FixedNegotiation

    def audience(self, request) -> Audience:
        audience = aggregate_audience(request.user)
        if audience is None:  # the permission class said so already; belt and braces
            raise PermissionDenied()
        return audience


def _json(payload: dict, content_type: str = "application/json") -> HttpResponse:
    return HttpResponse(orjson.dumps(payload), content_type=content_type)


def _set_json(boundary_set) -> dict:
    if boundary_set is None:
        return {"slug": None, "name": "Operational areas"}
    return {"slug": boundary_set.slug, "name": boundary_set.name}


PARAMETERS = [
    OpenApiParameter("boundary_set", str, description="Slug of a boundary set (partners: required)."),
    OpenApiParameter(
        "period", str, description="A calendar month `2026-10` or quarter `2026-Q3` (partners: required, closed only)."
    ),
    OpenApiParameter("record_type", str, enum=list(selectors.RECORD_TYPES), description="observation by default."),
    OpenApiParameter("start", OpenApiTypes.DATETIME, description="Inside the partnership only: from (inclusive)."),
    OpenApiParameter("end", OpenApiTypes.DATETIME, description="Inside the partnership only: to (exclusive)."),
    OpenApiParameter("incident_type", str, many=True, description="Inside the partnership only (observations)."),
    OpenApiParameter("areas", str, many=True, description="Inside the partnership only: area codes of the set."),
]


BOUNDARY_SET = inline_serializer("AggregateBoundarySet", {
    "slug": serializers.CharField(allow_null=True, help_text="null: the operational areas"),
    "name": serializers.CharField(),
})
# The keys both audiences get; inside the partnership the filters applied follow too
# (start, end, incident_types, areas_in_scope), for partners nothing else. Echoed values are
# plain strings: enums here would collide by name with the request enums of other components.
AGGREGATE_META = {
    "boundary_set": BOUNDARY_SET,
    "period": serializers.CharField(allow_null=True),
    "record_type": serializers.CharField(),
}
COUNTS = inline_serializer("AreaCounts", {
    **AGGREGATE_META,
    "disclosure": serializers.DictField(allow_null=True, help_text="partners: how counts were suppressed and rounded"),
    "areas": inline_serializer("AreaCount", {
        "code": serializers.CharField(), "name": serializers.CharField(),
        "count": serializers.IntegerField(allow_null=True, help_text="null: suppressed"),
        "suppressed": serializers.BooleanField(),
    }, many=True),
})
HOTSPOTS = inline_serializer("HotspotMap", {
    **AGGREGATE_META,
    "type": serializers.CharField(help_text="FeatureCollection"),
    "method": serializers.CharField(), "locations": serializers.CharField(),
    "bandwidth": serializers.CharField(), "cell_size": serializers.CharField(),
    "published_cells": serializers.CharField(), "classes": serializers.ListField(child=serializers.CharField()),
    "class_method": serializers.CharField(), "suppressed_areas": serializers.ListField(),
    "features": serializers.ListField(child=serializers.DictField(), help_text="cells: Polygon, properties.class"),
})


class BoundarySetsView(AggregateView):
    @extend_schema(responses={200: inline_serializer("AggregateBoundarySets", {"boundary_sets": BOUNDARY_SET.__class__(
        many=True)})}, summary="Boundary sets aggregates can be asked for")
    def get(self, request):
        audience = self.audience(request)
        sets = boundary_sets_for_partners() if audience.partner else selectors.boundary_sets()
        return _json({"boundary_sets": [_set_json(s) for s in sets]})


class CountsView(AggregateView):
    @extend_schema(
        parameters=PARAMETERS, responses={200: COUNTS},
        summary="Records per area of a boundary set (partners: suppressed below DISCLOSURE_MIN_COUNT, rounded)",
    )
    def get(self, request):
        audience = self.audience(request)
        if audience.partner:
            query = partner_query(request.query_params)
            rows = selectors.partner_counts(
                boundary_set=query.boundary_set, family_set_ids=query.family_set_ids,
                record_type=query.record_type, period=query.period, using=DEFAULT_DB,
            )
            return _json({
                "boundary_set": _set_json(query.boundary_set),
                "period": query.period.label,
                "record_type": query.record_type,
                "disclosure": {
                    "suppressed_below": disclosure.min_count(),
                    "rounded_to": disclosure.round_to(),
                    "locations": _map_points_text(),
                    "method": "docs/disclosure.md",
                },
                "areas": [_count_json(row) for row in rows],
            })
        query = internal_query(request.query_params, audience=audience, hotspots=False)
        rows = selectors.counts_by_area(areas=query.areas, records=query.records, using=DEFAULT_DB)
        return _json({
            "boundary_set": _set_json(query.boundary_set),
            **_filters_json(query),
            "disclosure": None,
            "areas": [_count_json(row) for row in rows],
        })


class HotspotsView(AggregateView):
    @extend_schema(
        parameters=[
            *PARAMETERS,
            OpenApiParameter("bandwidth", float, description="Inside the partnership only: metres (default 250)."),
            OpenApiParameter("cell_size", float, description="Inside the partnership only: metres (default 50)."),
        ],
        responses={(200, GEOJSON): HOTSPOTS},
        summary="Hotspot classes (quartic KDE on the British National Grid), without numbers",
    )
    def get(self, request):
        audience = self.audience(request)
        if audience.partner:
            query = partner_query(request.query_params)
            result = selectors.partner_hotspots(
                boundary_set=query.boundary_set, family_set_ids=query.family_set_ids,
                record_type=query.record_type, period=query.period, using=DEFAULT_DB,
            )
            meta = {
                "boundary_set": _set_json(query.boundary_set), "period": query.period.label,
                "record_type": query.record_type,
            }
            bandwidth, cell = disclosure.hotspot_bandwidth_m(), disclosure.hotspot_cell_m()
            locations = _map_points_text()
        else:
            query = internal_query(request.query_params, audience=audience, hotspots=True)
            ids = [row.id for row in query.areas]
            cells = selectors.hotspot_surface(
                region_area_ids=ids, point_area_ids=ids, records=query.records,
                bandwidth_m=query.bandwidth_m, cell_m=query.cell_m,
                min_records=disclosure.hotspot_min_records(), using=DEFAULT_DB,
            )
            result = selectors.hotspot_map(cells)
            meta = {"boundary_set": _set_json(query.boundary_set), **_filters_json(query)}
            bandwidth, cell = query.bandwidth_m, query.cell_m
            locations = "as recorded"
        return _json(_feature_collection(result, meta, bandwidth=bandwidth, cell=cell, locations=locations), GEOJSON)


def _count_json(row: selectors.AreaCount) -> dict:
    return {"code": row.area.code, "name": row.area.name, "count": row.count, "suppressed": row.suppressed}


def _filters_json(query) -> dict:
    records = query.records
    return {
        "period": query.period.label if query.period else None,
        "start": records.start.isoformat() if records.start else None,
        "end": records.end.isoformat() if records.end else None,
        "record_type": records.record_type,
        "incident_types": list(records.incident_types),
        "areas_in_scope": "all" if records.scope_area_ids is None else "yours",
    }


def _map_points_text() -> str:
    """How partner outputs place records, as text (hotspot documents carry no numbers)."""
    return (
        f"every record at its map point, the centre of its {disclosure.map_point_spacing_m():.2f} m cell of a fixed "
        "grid on the British National Grid (EPSG:27700): no location is shown more precisely than "
        f"{disclosure.location_radius_m():g} m"
    )


def _feature_collection(
    result: selectors.HotspotMap, meta: dict, *, bandwidth: float, cell: float, locations: str
) -> dict:
    """GeoJSON with one property per cell, its class. Parameters are written as text, so
    the only numbers in the document are coordinates."""
    return {
        "type": "FeatureCollection",
        **meta,
        "method": "quartic kernel density estimate on the British National Grid (EPSG:27700)",
        "locations": locations,
        "bandwidth": f"{bandwidth:g} m",
        "cell_size": f"{cell:g} m",
        "published_cells": (
            f"only cells with at least {disclosure.hotspot_min_records()} records within one bandwidth of their centre"
        ),
        "classes": list(disclosure.HOTSPOT_CLASSES),
        "class_method": disclosure.CLASS_METHOD,
        "suppressed_areas": result.suppressed_areas,
        "features": [
            {"type": "Feature", "geometry": geometry, "properties": {"class": cls}}
            for geometry, cls in result.features
        ],
    }
