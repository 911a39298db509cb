"""Filters of the records API and exports, parsed and validated once.

A `RecordFilter` is built from query parameters (or a POSTed JSON/form body, for
polygons too long for a URL), applied to a record queryset, kept on an Export as plain
JSON (`as_params`) and described in the s.62 log (`describe`).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.contrib.gis.gdal import GDALException
from django.contrib.gis.geos import GEOSException, GEOSGeometry, MultiPolygon, Polygon
from django.db.models import Q

from fieldsync import parsing
from fieldsync.errors import ApiError, field_error, invalid

from ..choices import Grade, IncidentType, Qualifier, ReviewState

RECORD_TYPES = ("observation", "street_audit", "audit_item")
# The column each type's time filter (and OGC `datetime`) applies to.
TIME_COLUMN = {
    "observation": "observed_at",
    "street_audit": "started_at",
    # Items carry no time of their own but the audit they were found on.
    "audit_item": "street_audit__started_at",
}
# Filters that only make sense for some types.
TYPE_FILTERS = {
    "qualifier": ("observation",),
    "incident_type": ("observation",),
    "issue_type": ("audit_item",),
    "grade": ("audit_item",),
}
# Every parameter `record_filter_parse` reads.
FILTER_PARAMS = frozenset({
    "from", "to", "qualifier", "incident_type", "issue_type", "grade", "area", "organisation", "review_state",
    "include_rejected", "bbox", "bbox-crs", "polygon",
})
WGS84 = 4326
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"


@dataclass(frozen=True)
class RecordFilter:
    record_type: str
    time_from: datetime | None = None
    time_to: datetime | None = None  # exclusive
    qualifier: tuple[str, ...] = ()
    incident_type: tuple[str, ...] = ()
    issue_type: tuple[str, ...] = ()
    grade: tuple[str, ...] = ()
    area: tuple[int, ...] = ()
    organisation: tuple[str, ...] = ()  # ids or slugs
    review_state: tuple[str, ...] = ()
    include_rejected: bool = False
    bbox: tuple[float, float, float, float] | None = None
    polygon: GEOSGeometry | None = field(default=None, compare=False)

    # --- applying ---------------------------------------------------------------------------

    def q(self) -> Q:
        """The filter as a Q on the record table (scope and redaction are the selector's)."""
        q = Q(deleted_at__isnull=True)
        if self.record_type == "observation":
            # Restricted by the DPO (UK GDPR Art. 18): kept, but no longer used for analysis.
            q &= Q(processing_restricted=False)
        column = TIME_COLUMN[self.record_type]
        if self.time_from is not None:
            q &= Q(**{f"{column}__gte": self.time_from})
        if self.time_to is not None:
            q &= Q(**{f"{column}__lt": self.time_to})
        for name in ("qualifier", "incident_type", "issue_type", "grade", "review_state"):
            values = getattr(self, name)
            if values:
                q &= Q(**{f"{self.state_column if name == 'review_state' else name}__in": values})
        if not self.include_rejected and ReviewState.REJECTED.value not in self.review_state:
            # Rejected records are kept but left out of analysis (product.md, Review).
            q &= ~Q(**{self.state_column: ReviewState.REJECTED.value})
        if self.area:
            q &= Q(area_id__in=self.area)
        if self.organisation:
            ids = [int(v) for v in self.organisation if v.isascii() and v.isdigit()]
            slugs = [v for v in self.organisation if not (v.isascii() and v.isdigit())]
            q &= Q(organisation_id__in=ids) | Q(organisation__slug__in=slugs)
        if self.bbox is not None:
            box = Polygon.from_bbox(self.bbox)
            box.srid = WGS84
            q &= Q(location__intersects=box)
        if self.polygon is not None:
            q &= Q(location__intersects=self.polygon)
        return q

    @property
    def state_column(self) -> str:
        # Items are reviewed with their audit (product.md): its state is theirs.
        return "street_audit__review_state" if self.record_type == "audit_item" else "review_state"

    # --- keeping and describing ---------------------------------------------------------

    def as_params(self) -> dict[str, Any]:
        """Plain JSON that `record_filter_parse` turns back into an equal filter."""
        params: dict[str, Any] = {}
        if self.time_from:
            params["from"] = self.time_from.isoformat()
        if self.time_to:
            params["to"] = self.time_to.isoformat()
        for name in ("qualifier", "incident_type", "issue_type", "grade", "organisation", "review_state"):
            if getattr(self, name):
                params[name] = ",".join(getattr(self, name))
        if self.area:
            params["area"] = ",".join(str(a) for a in self.area)
        if self.include_rejected:
            params["include_rejected"] = "true"
        if self.bbox:
            params["bbox"] = ",".join(repr(v) for v in self.bbox)
        if self.polygon is not None:
            params["polygon"] = self.polygon.wkt
        return params

    def describe(self) -> dict[str, Any]:
        """The filter for the access log: everything but a long polygon, which is summed up."""
        params = self.as_params()
        if self.polygon is not None and len(params["polygon"]) > 2000:
            params["polygon"] = {"extent": list(self.polygon.extent), "points": self.polygon.num_points}
        return params


# --- parsing ----------------------------------------------------------------------------------

def record_filter_parse(record_type: str, params: Mapping[str, Any]) -> RecordFilter:
    """Validate request parameters into a filter; 400 `invalid` naming the parameter. An
    unknown parameter is refused too: a misspelt filter must not silently select everything.

    `params` is a QueryDict (repeated keys allowed) or a plain dict from a JSON body.
    """
    if record_type not in RECORD_TYPES:
        raise ApiError("not_found", f"Unknown record type {record_type!r}.", status_code=404)
    unknown = sorted(set(params) - FILTER_PARAMS)
    if unknown:
        raise ApiError("invalid", f"unknown parameter(s): {', '.join(unknown)}",
                       fields={name: [field_error("unknown_parameter", "unknown parameter")] for name in unknown})
    get = _getter(params)
    for name, types in TYPE_FILTERS.items():
        if get(name) and record_type not in types:
            raise invalid(name, "not_applicable", f"does not apply to {record_type}")
    time_from = parsing.when("from", get("from"))
    time_to = parsing.when("to", get("to"), end=True)
    if time_from and time_to and time_to <= time_from:
        raise invalid("to", "out_of_order", "must be after from")
    return RecordFilter(
        record_type=record_type,
        time_from=time_from,
        time_to=time_to,
        qualifier=_codes("qualifier", get("qualifier"), Qualifier.values),
        incident_type=_codes("incident_type", get("incident_type"), IncidentType.values),
        # Forms may add issue types of their own: any code, but only a code.
        issue_type=_codes("issue_type", get("issue_type"), None),
        grade=_codes("grade", get("grade"), Grade.values),
        area=tuple(_integer("area", v) for v in _split(get("area"))),
        organisation=tuple(_slug("organisation", v) for v in _split(get("organisation"))),
        review_state=_codes("review_state", get("review_state"), ReviewState.values),
        include_rejected=parsing.boolean("include_rejected", get("include_rejected")),
        bbox=bbox_parse(get("bbox"), crs=get("bbox-crs")),
        polygon=polygon_parse(get("polygon")),
    )


def _getter(params: Mapping[str, Any]):
    def get(name: str) -> str | None:
        if hasattr(params, "getlist"):
            values = [v for v in params.getlist(name) if v != ""]
            return ",".join(values) if values else None
        value = params.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, list | tuple):
            return ",".join(str(v) for v in value)
        if isinstance(value, dict):  # a GeoJSON polygon sent as an object
            return orjson.dumps(value).decode()
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return get


def _split(raw: str | None) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()] if raw else []


def _codes(name: str, raw: str | None, allowed) -> tuple[str, ...]:
    values = _split(raw)
    for value in values:
        if allowed is not None and value not in allowed:
            raise invalid(name, "not_in_choices", f"unknown code {value!r}")
        if allowed is None and not (value.replace("_", "").isalnum() and len(value) <= 40):
            raise invalid(name, "invalid_code", f"not a code: {value!r}")
    return tuple(dict.fromkeys(values))


def _integer(name: str, raw: str) -> int:
    value = parsing.integer(name, raw, minimum=0)
    assert value is not None  # _split leaves no empty parts
    return value


# ASCII only: q() reads an all-digits value as an id, and '²'.isdigit() is true.
_SLUG = re.compile(r"[A-Za-z0-9_-]{1,60}")


def _slug(name: str, raw: str) -> str:
    if not _SLUG.fullmatch(raw):
        raise invalid(name, "invalid_id", f"not an id or slug: {raw!r}")
    return raw


def datetime_interval_parse(raw: str | None) -> tuple[datetime | None, datetime | None]:
    """OGC API `datetime`: an instant, or `start/end` with `..` (or nothing) for open ends.
    Returns a half-open [start, end) range; an instant is a range of one microsecond, a
    date-only instant the whole day."""
    if raw is None or raw == "":
        return None, None
    if "/" not in raw:
        start = parsing.when("datetime", raw)
        if parsing.is_date(raw):  # a date: the whole day
            return start, parsing.when("datetime", raw, end=True)
        return start, start + timedelta(microseconds=1)
    left, _, right = raw.partition("/")
    start = None if left in ("", "..") else parsing.when("datetime", left)
    end = None if right in ("", "..") else parsing.when("datetime", right, end=True)
    if end is not None and not parsing.is_date(right):
        end = end + timedelta(microseconds=1)  # closed interval in OGC: include the end instant
    if start and end and end <= start:
        raise invalid("datetime", "out_of_order", "the interval ends before it starts")
    return start, end


def bbox_parse(raw: str | None, *, crs: str | None = None) -> tuple[float, float, float, float] | None:
    """`minlon,minlat,maxlon,maxlat` in WGS84 (OGC: CRS84; 6 numbers = 3D, heights ignored)."""
    if raw is None:
        return None
    if crs not in (None, "", CRS84):
        raise invalid("bbox-crs", "unsupported_crs", f"only {CRS84} is supported")
    return parsing.bbox("bbox", raw)


def polygon_parse(raw: str | None) -> GEOSGeometry | None:
    """A Polygon or MultiPolygon in WGS84 as WKT/EWKT or GeoJSON (a geometry or a Feature).

    Only `type` and `coordinates` of GeoJSON are read: a `crs` member is never handed to
    GDAL (settings.py, gis.W001)."""
    if raw is None:
        return None
    if len(raw) > settings.ANALYSIS_POLYGON_MAX_CHARS:
        raise invalid("polygon", "too_long", f"longer than {settings.ANALYSIS_POLYGON_MAX_CHARS} characters")
    text = raw.strip()
    try:
        if text.startswith("{"):
            data = orjson.loads(text)
            if isinstance(data, dict) and data.get("type") == "Feature":
                data = data.get("geometry") or {}
            if not isinstance(data, dict) or data.get("type") not in ("Polygon", "MultiPolygon"):
                raise invalid("polygon", "invalid_geometry", "a GeoJSON Polygon or MultiPolygon")
            geom = GEOSGeometry(orjson.dumps({"type": data["type"], "coordinates": data.get("coordinates")}).decode())
            geom.srid = WGS84
        else:
            geom = GEOSGeometry(text)
            if geom.srid not in (None, WGS84):
                raise invalid("polygon", "invalid_geometry", "coordinates must be WGS84 longitude/latitude (SRID 4326)")
            geom.srid = WGS84
    except (ValueError, TypeError, GEOSException, GDALException):
        raise invalid("polygon", "invalid_geometry", "not WKT or GeoJSON") from None
    if not isinstance(geom, Polygon | MultiPolygon):
        raise invalid("polygon", "invalid_geometry", "a Polygon or MultiPolygon")
    if geom.empty:
        raise invalid("polygon", "invalid_geometry", "empty")
    if geom.num_points > settings.ANALYSIS_POLYGON_MAX_POINTS:
        raise invalid("polygon", "too_large", f"more than {settings.ANALYSIS_POLYGON_MAX_POINTS} points")
    minx, miny, maxx, maxy = geom.extent
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise invalid("polygon", "invalid_geometry", "coordinates must be longitude/latitude in WGS84")
    if not geom.valid:
        raise invalid("polygon", "invalid_geometry", f"not a valid polygon: {geom.valid_reason}")
    return geom
