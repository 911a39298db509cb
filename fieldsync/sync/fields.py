"""Wire fields of a record type: how each is validated, stored and sent back.

A record type declares its `data` fields once with these specs; the engine derives from
them the JSON Schema in the manifest, the per-field validation of pushes, the SQL that
writes rows in bulk and the dictionaries that pulls send. Validation is hand-written
rather than a generic JSON-Schema validator because it runs for every mutation of every
push and must stay in the microseconds.
"""
from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from fieldsync import parsing

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MISSING = object()


class Invalid(Exception):
    """A field value that cannot be accepted; `code` is machine readable."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Context:
    """What validation may depend on besides the value: the form version's code lists."""

    now: datetime
    max_future: timedelta
    choices: dict[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class FieldSpec:
    """One field of a record's `data`.

    `column` is the database column; `sql_type` the array element type used when rows
    are written in bulk with `unnest`; `sql_in` wraps the parameter (e.g. geometry).
    """

    name: str
    kind: str = "text"
    required: bool = False
    nullable: bool = True
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    choices: Sequence[str] | None = None
    # Name of a code list that depends on the form version (e.g. "issue_type").
    form_choices: str | None = None
    column: str | None = None
    default: Any = None
    description: str = ""

    @property
    def db_column(self) -> str:
        return self.column or self.name

    # --- validation ---------------------------------------------------------------------

    def clean(self, value: Any, ctx: Context) -> Any:
        """Return the value in its Python form or raise Invalid."""
        if value is None:
            if not self.nullable:
                raise Invalid("null", f"{self.name} may not be null")
            return None
        cleaner = _CLEANERS[self.kind]
        return cleaner(self, value, ctx)

    def allowed(self, ctx: Context) -> Sequence[str] | None:
        if self.form_choices:
            return ctx.choices.get(self.form_choices, ())
        return self.choices

    # --- schema ---------------------------------------------------------------------------

    def json_schema(self, choices: dict[str, Sequence[str]] | None = None) -> dict:
        schema = dict(_SCHEMAS[self.kind])
        allowed = (choices or {}).get(self.form_choices) if self.form_choices else self.choices
        if allowed is not None:
            if self.kind == "text_list":
                schema["items"] = {"type": "string", "enum": list(allowed)}
            else:
                schema["enum"] = list(allowed) + ([None] if self.nullable else [])
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.nullable and "enum" not in schema:
            t = schema.get("type")
            if t is not None:
                schema["type"] = [t, "null"] if isinstance(t, str) else [*t, "null"]
        if self.description:
            schema["description"] = self.description
        return schema


def _text(spec: FieldSpec, value: Any, ctx: Context) -> str:
    if not isinstance(value, str):
        raise Invalid("wrong_type", f"{spec.name} must be a string")
    if spec.max_length is not None and len(value) > spec.max_length:
        raise Invalid("too_long", f"{spec.name} is longer than {spec.max_length} characters")
    if "\x00" in value:
        raise Invalid("invalid_character", f"{spec.name} contains a NUL character")
    allowed = spec.allowed(ctx)
    if allowed is not None and value not in allowed:
        raise Invalid("not_in_choices", f"{value!r} is not an allowed {spec.name}")
    return value


def _number(spec: FieldSpec, value: Any, ctx: Context) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid("wrong_type", f"{spec.name} must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise Invalid("not_finite", f"{spec.name} must be a finite number")
    if spec.minimum is not None and value < spec.minimum:
        raise Invalid("too_small", f"{spec.name} must be at least {spec.minimum}")
    if spec.maximum is not None and value > spec.maximum:
        raise Invalid("too_large", f"{spec.name} must be at most {spec.maximum}")
    return value


def parse_time(value: Any, name: str) -> datetime:
    """A handheld's date-time: ISO 8601 with its offset, kept as UTC (fieldsync.parsing.instant:
    year 1 east of Greenwich or 9999 west of it has no UTC instant Python can hold, and
    PostgreSQL refuses offsets beyond ±15:59 that ISO 8601 allows up to ±23:59 — the instant
    is what matters, not the offset)."""
    try:
        return parsing.instant(value, require_offset=True)
    except parsing.BadInstant as exc:
        raise Invalid(exc.code, f"{name}: {exc.message}") from None


def _datetime(spec: FieldSpec, value: Any, ctx: Context) -> datetime:
    parsed = parse_time(value, spec.name)
    if parsed > ctx.now + ctx.max_future:
        raise Invalid("future_time", f"{spec.name} is in the future")
    if parsed.year < 2000:
        raise Invalid("too_old", f"{spec.name} is before the year 2000")
    return parsed


def _lonlat(pair: Any, name: str) -> tuple[float, float]:
    if not isinstance(pair, list | tuple) or len(pair) not in (2, 3):
        raise Invalid("invalid_geometry", f"{name} coordinates must be [lon, lat]")
    lon, lat = pair[0], pair[1]
    for v in (lon, lat):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise Invalid("invalid_geometry", f"{name} coordinates must be finite numbers")
    if not -180 <= lon <= 180 or not -90 <= lat <= 90:
        raise Invalid("out_of_range", f"{name} is outside WGS84 longitude/latitude range")
    return float(lon), float(lat)


def _point(spec: FieldSpec, value: Any, ctx: Context) -> tuple[float, float]:
    if not isinstance(value, dict) or value.get("type") != "Point":
        raise Invalid("invalid_geometry", f"{spec.name} must be a GeoJSON Point")
    return _lonlat(value.get("coordinates"), spec.name)


def _line(spec: FieldSpec, value: Any, ctx: Context) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, dict) or value.get("type") != "LineString":
        raise Invalid("invalid_geometry", f"{spec.name} must be a GeoJSON LineString")
    coords = value.get("coordinates")
    if not isinstance(coords, list) or not 2 <= len(coords) <= 10000:
        raise Invalid("invalid_geometry", f"{spec.name} needs 2 to 10000 positions")
    return tuple(_lonlat(pair, spec.name) for pair in coords)


def _uuid(spec: FieldSpec, value: Any, ctx: Context) -> uuid.UUID:
    if not isinstance(value, str):
        raise Invalid("wrong_type", f"{spec.name} must be a UUID string")
    parsed = parsing.as_uuid(value)
    if parsed is None:
        raise Invalid("invalid_uuid", f"{spec.name} is not a UUID")
    return parsed


def _text_list(spec: FieldSpec, value: Any, ctx: Context) -> list[str]:
    if not isinstance(value, list) or len(value) > 50:
        raise Invalid("wrong_type", f"{spec.name} must be a list of at most 50 strings")
    allowed = spec.allowed(ctx)
    for item in value:
        if not isinstance(item, str) or (spec.max_length and len(item) > spec.max_length):
            raise Invalid("wrong_type", f"{spec.name} must hold short strings")
        if "\x00" in item:
            raise Invalid("invalid_character", f"{spec.name} contains a NUL character")
        if allowed is not None and item not in allowed:
            raise Invalid("not_in_choices", f"{item!r} is not an allowed {spec.name}")
    return list(value)


def _photos(spec: FieldSpec, value: Any, ctx: Context) -> list[str]:
    if not isinstance(value, list) or len(value) > 20:
        raise Invalid("wrong_type", f"{spec.name} must be a list of at most 20 sha256 hashes")
    for item in value:
        if not isinstance(item, str) or not SHA256_RE.match(item):
            raise Invalid("invalid_hash", f"{spec.name} entries must be lowercase hex sha256")
    return list(dict.fromkeys(value))


def _json_list(spec: FieldSpec, value: Any, ctx: Context) -> list:
    if not isinstance(value, list) or len(value) > 50:
        raise Invalid("wrong_type", f"{spec.name} must be a list of at most 50 objects")
    for item in value:
        if not isinstance(item, dict):
            raise Invalid("wrong_type", f"{spec.name} entries must be objects")
        for key, v in item.items():
            if not isinstance(key, str) or len(key) > 40:
                raise Invalid("wrong_type", f"{spec.name} keys must be short strings")
            if v is not None and not isinstance(v, str | int | float | bool):
                raise Invalid("wrong_type", f"{spec.name} values must be plain values")
            # PostgreSQL text and jsonb cannot hold NUL.
            if "\x00" in key or (isinstance(v, str) and "\x00" in v):
                raise Invalid("invalid_character", f"{spec.name} contains a NUL character")
            if isinstance(v, str) and len(v) > 1000:
                raise Invalid("too_long", f"{spec.name} values must be under 1000 characters")
            if isinstance(v, float) and not math.isfinite(v):
                raise Invalid("not_finite", f"{spec.name} values must be finite")
    return value


def _integer(spec: FieldSpec, value: Any, ctx: Context) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("wrong_type", f"{spec.name} must be an integer")
    if spec.minimum is not None and value < spec.minimum:
        raise Invalid("too_small", f"{spec.name} must be at least {spec.minimum}")
    if abs(value) > 2**31 - 1:
        raise Invalid("too_large", f"{spec.name} is too large")
    return value


_CLEANERS: dict[str, Callable[[FieldSpec, Any, Context], Any]] = {
    "text": _text,
    "number": _number,
    "integer": _integer,
    "datetime": _datetime,
    "point": _point,
    "line": _line,
    "uuid": _uuid,
    "text_list": _text_list,
    "photos": _photos,
    "json_list": _json_list,
}

_SCHEMAS: dict[str, dict] = {
    "text": {"type": "string"},
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "datetime": {"type": "string", "format": "date-time"},
    "point": {
        "type": "object",
        "required": ["type", "coordinates"],
        "properties": {
            "type": {"const": "Point"},
            "coordinates": {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "number"}},
        },
    },
    "line": {
        "type": "object",
        "required": ["type", "coordinates"],
        "properties": {"type": {"const": "LineString"}, "coordinates": {"type": "array", "minItems": 2}},
    },
    "uuid": {"type": "string", "format": "uuid"},
    "text_list": {"type": "array", "items": {"type": "string"}},
    "photos": {"type": "array", "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "maxItems": 20},
    "json_list": {"type": "array", "items": {"type": "object"}, "maxItems": 50},
}


# --- storage: Python value -> bulk-write parameter, and stored value -> wire value ---------

def point_ewkt(lonlat: tuple[float, float] | None) -> str | None:
    if lonlat is None:
        return None
    return f"SRID=4326;POINT({lonlat[0]!r} {lonlat[1]!r})"


def line_ewkt(coords: Sequence[tuple[float, float]] | None) -> str | None:
    if coords is None:
        return None
    return "SRID=4326;LINESTRING(" + ",".join(f"{x!r} {y!r}" for x, y in coords) + ")"


def to_wire(spec: FieldSpec, value: Any) -> Any:
    """The JSON value of a cleaned field (as stored in version snapshots and pulls)."""
    if value is None:
        return None
    kind = spec.kind
    if kind == "datetime":
        return value.isoformat()
    if kind == "point":
        return {"type": "Point", "coordinates": [value[0], value[1]]}
    if kind == "line":
        return {"type": "LineString", "coordinates": [list(p) for p in value]}
    if kind == "uuid":
        return str(value)
    return value


def wire_sql(spec: FieldSpec, column: str) -> str:
    """`to_wire` in SQL: the JSON text PostgreSQL writes for a stored column is the text
    orjson writes for `to_wire` of its loaded value (a pull builds a page's data this way,
    without a Python object per field; tests/sync/test_wire_sql.py holds the two equal)."""
    kind = spec.kind
    if kind == "datetime":
        # Python's isoformat: microseconds only when there are some, offset as +00:00 (the
        # session's TimeZone is UTC, which Django sets).
        return (
            f"to_json(to_char({column}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || "
            f"CASE WHEN date_trunc('second', {column}) = {column} THEN '' "
            f"ELSE to_char({column}, '.US') END || '+00:00')"
        )
    if kind == "point":
        return (f"CASE WHEN {column} IS NULL THEN NULL ELSE json_build_object('type', 'Point', 'coordinates', "
                f"json_build_array(ST_X({column}), ST_Y({column}))) END")
    if kind == "line":
        # The precision load_rows reads routes with (ST_AsGeoJSON's nine decimals).
        return (f"CASE WHEN {column} IS NULL THEN NULL ELSE json_build_object('type', 'LineString', "
                f"'coordinates', ST_AsGeoJSON({column})::json -> 'coordinates') END")
    return f"to_json({column})"


def truthy_sql(spec: FieldSpec, column: str) -> str:
    """Whether the stored value is one Python calls true (an empty text or list is not)."""
    kind = spec.kind
    if kind == "text":
        return f"coalesce({column} <> '', false)"
    if kind in ("text_list", "photos"):
        return f"coalesce(cardinality({column}) > 0, false)"
    if kind == "json_list":
        return f"coalesce(jsonb_array_length({column}) > 0, false)"
    if kind in ("number", "integer"):
        return f"coalesce({column} <> 0, false)"
    return f"({column} IS NOT NULL)"


def now() -> datetime:
    return timezone.now()
