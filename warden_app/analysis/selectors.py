"""Reads of field records for analysis: scope, filter and redaction, in SQL, in one place.

`records_query` turns (user, record type, filter) into a `RecordQuery`: the records the
user may see (`permissions.record_scope_q`, the SQL twin of `can_view_record`), each
personal column wrapped in a CASE that yields NULL wherever `permissions.personal_fields_q`
does not open it, and one boolean per personal field saying whether it was open.

Rows are built by PostgreSQL, never from model instances: a GeoJSON Feature (or a JSON
list record) is one `json_build_object(...)` text per row, geometry by ST_AsGeoJSON, and a
CSV row is a tuple of text and numbers. Python only joins them, so a million rows stream
in constant memory and most of the per-row work runs in the database, beside the web
worker rather than in it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import reduce
from operator import or_
from typing import Any

from django.contrib.gis.db.models.functions import AsGeoJSON, Transform
from django.db.models import (
    BigIntegerField,
    BooleanField,
    Case,
    Expression,
    F,
    FloatField,
    Func,
    Q,
    QuerySet,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Cast

from .. import permissions
from ..models import AuditItem, Observation, StreetAudit
from ..roles import Role
from .filters import RecordFilter

MODELS = {"observation": Observation, "street_audit": StreetAudit, "audit_item": AuditItem}

# ST_AsGeoJSON precision: 6 decimal places of a degree, so a coordinate is off by at most
# 0.5e-6 degrees: 0.056 m north-south, 0.033 m east-west at Wigan's latitude (53.5° N), far
# below GPS accuracy (metres). CSV longitude/latitude are not rounded.
GEOJSON_DECIMALS = 6


@dataclass(frozen=True)
class Column:
    """One output property: its name, where it comes from, and what kind of value it is
    (text, integer, number, time, list, json, geometry, uuid): the kind decides how CSV,
    XLSX and GeoPackage write it."""

    name: str
    source: str  # ORM path
    kind: str = "text"


_HEAD = (
    Column("version", "version", "integer"),
    Column("organisation", "organisation__slug"),
    Column("author", "author__username"),
    Column("area_id", "area_id", "integer"),
    Column("area", "area__name"),
)
_TAIL = (
    Column("accuracy_m", "accuracy_m", "number"),
    Column("fix_source", "fix_source"),
    Column("form_version", "form__version", "integer"),
    Column("created_at", "created_at", "time"),
    Column("updated_at", "updated_at", "time"),
)
COLUMNS: dict[str, tuple[Column, ...]] = {
    "observation": (
        *_HEAD,
        Column("qualifier", "qualifier"),
        Column("incident_type", "incident_type"),
        Column("observed_at", "observed_at", "time"),
        Column("review_state", "review_state"),
        Column("description", "description"),
        Column("action_taken", "action_taken", "list"),
        Column("persons_involved", "persons_involved", "json"),
        Column("photos", "photos", "list"),
        *_TAIL,
    ),
    "street_audit": (
        *_HEAD,
        Column("title", "title"),
        Column("started_at", "started_at", "time"),
        Column("finished_at", "finished_at", "time"),
        Column("review_state", "review_state"),
        Column("notes", "notes"),
        Column("route", "route", "geometry"),
        Column("photos", "photos", "list"),
        *_TAIL,
    ),
    "audit_item": (
        *_HEAD,
        Column("street_audit", "street_audit_id", "uuid"),
        Column("audit_started_at", "street_audit__started_at", "time"),
        Column("review_state", "street_audit__review_state"),
        Column("issue_type", "issue_type"),
        Column("grade", "grade"),
        Column("responsible_agency", "responsible_agency"),
        Column("notes", "notes"),
        Column("photos", "photos", "list"),
        *_TAIL,
    ),
}


# --- SQL building blocks ---------------------------------------------------------------------

_KEY = re.compile(r"^[a-z_]+$")


def _compile_each(compiler, expressions) -> tuple[list[str], list]:
    """The SQL of each expression, and all their parameters in order."""
    sqls, params = [], []
    for expression in expressions:
        sql, expression_params = compiler.compile(expression)
        sqls.append(sql)
        params.extend(expression_params)
    return sqls, params


class JsonObject(Func):
    """json_build_object('key', value, …), as text (or as json, to nest it); keys are our
    own property names, never input."""

    output_field = TextField()

    def __init__(self, pairs: dict[str, Expression], *, text: bool = True):
        if not all(_KEY.match(key) for key in pairs):
            raise ValueError("property names are lower-case identifiers")
        self.keys, self.text = list(pairs), text
        super().__init__(*pairs.values())

    def as_sql(self, compiler, connection, **extra):
        sqls, params = _compile_each(compiler, self.get_source_expressions())
        parts = [f"'{key}', {sql}" for key, sql in zip(self.keys, sqls, strict=True)]
        sql = f"json_build_object({', '.join(parts)})"
        return (f"{sql}::text" if self.text else sql), params


class _AsJson(Func):
    """Text that is already JSON (ST_AsGeoJSON), as json: embedded, not quoted."""

    template = "(%(expressions)s)::json"
    output_field = TextField()


class _IsoTime(Func):
    """A timestamptz as RFC 3339 text in UTC (the connection's time zone), as to_json writes it."""

    template = "(to_json(%(expressions)s) #>> '{}')"
    output_field = TextField()


class _Joined(Func):
    template = "array_to_string(%(expressions)s, ';')"
    output_field = TextField()


class _NoFormula(Func):
    """CSV text that a spreadsheet would run as a formula gets a leading apostrophe.
    (The column appears three times: only for plain columns, which carry no parameters.)"""

    template = "(CASE WHEN left(%(expressions)s, 1) IN ('=', '+', '-', '@', E'\\t', E'\\r') "\
               "THEN '''' || %(expressions)s ELSE %(expressions)s END)"
    output_field = TextField()


class _Redacted(Func):
    """The names of the personal fields not open in this row, as text[]."""

    output_field = TextField()

    def __init__(self, flags: dict[str, Expression], joined: bool):
        if not all(_KEY.match(key) for key in flags):
            raise ValueError("field names are lower-case identifiers")
        self.names, self.joined = list(flags), joined
        super().__init__(*flags.values())

    def as_sql(self, compiler, connection, **extra):
        sqls, params = _compile_each(compiler, self.get_source_expressions())
        parts = [f"CASE WHEN {sql} THEN NULL ELSE '{name}' END" for name, sql in zip(self.names, sqls, strict=True)]
        array = f"array_remove(ARRAY[{', '.join(parts)}]::text[], NULL)" if parts else "ARRAY[]::text[]"
        return (f"array_to_string({array}, ';')" if self.joined else f"to_json({array})"), params


class _X(Func):
    function = "ST_X"
    output_field = FloatField()


class _Y(Func):
    function = "ST_Y"
    output_field = FloatField()


# --- typed cells (XLSX, GeoPackage) --------------------------------------------------------------

# The PostgreSQL type of a "cells" value of each column kind, as the binary COPY declares it.
CELL_TYPES = {"integer": "int8", "number": "float8", "time": "timestamptz"}


# --- the query ---------------------------------------------------------------------------------

@dataclass
class RecordQuery:
    """What one read returns, before it is run: see the module docstring.

    Row layouts (`rows(shape=…)`), each ending with one boolean per `personal` field, True
    where that field was open in the row (its value is real), False where redacted
    (`flags=False` leaves those, and the feature's leading id, out):
      "feature": id, GeoJSON Feature text;
      "record":  id, JSON object text (properties, `location`, `redacted`);
      "csv":     id, one text/number per column, longitude, latitude, redacted ("a;b");
      "cells":   id, one typed value per column (`cell_types`: integers, floats and times
                 as themselves, the rest as text, with no formula guard: XLSX and GeoPackage
                 write text as text), x, y in `srid`, redacted ("a;b").
    """

    user: Any
    record_type: str
    filter: RecordFilter
    base: QuerySet  # scoped and filtered records
    columns: tuple[Column, ...]
    personal: tuple[str, ...]  # personal fields of the type, in column order
    personal_q: dict[str, Q | bool] = field(default_factory=dict)

    # --- what may be open ---------------------------------------------------------------

    @property
    def may_return_personal(self) -> bool:
        return any(q is not False for q in self.personal_q.values())

    @property
    def open_fields(self) -> list[str]:
        """Personal fields open in at least some records of this read."""
        return [name for name in self.personal if self.personal_q[name] is not False]

    def personal_open_q(self) -> Q | bool:
        """Records in which at least one personal field is open."""
        qs = [self.personal_q[name] for name in self.personal]
        if any(q is True for q in qs):
            return True
        real = [q for q in qs if q is not False]
        return reduce(or_, real) if real else False

    def personal_ids(self) -> QuerySet | None:
        """Ids of the records this read returns with personal fields open (None: none can
        be): what the s.62 row names."""
        open_q = self.personal_open_q()
        if open_q is False:
            return None
        qs = self.base if open_q is True else self.base.filter(open_q)
        return qs.order_by().values_list("id", flat=True)

    # --- the rows -------------------------------------------------------------------------

    def rows(self, *, shape: str = "feature", after=None, limit: int | None = None, flags: bool = True,
             srid: int = 4326):
        """A values_list queryset yielding the layout of `shape` (class docstring). Pages
        (`limit`, `after`) are in id order; a whole read is in no particular order.
        `flags=False`: without the per-field booleans, and for "feature" without the id
        (what a stream writes out: its log is written beforehand from `personal_ids`)."""
        with_flags = flags
        flags = {name: self._flag(name) for name in self.personal}
        exprs: dict[str, Expression] = {}
        if shape == "csv":
            for column in self.columns:
                exprs[f"c_{column.name}"] = self._csv_value(column)
            exprs["g_x"], exprs["g_y"] = _X("location"), _Y("location")
            exprs["c_redacted"] = _Redacted(flags, joined=True)
        elif shape == "cells":
            for column in self.columns:
                exprs[f"c_{column.name}"] = self._cell_value(column)
            point = F("location") if srid == 4326 else Transform("location", srid)
            exprs["g_x"], exprs["g_y"] = _X(point), _Y(point)
            exprs["c_redacted"] = _Redacted(flags, joined=True)
        else:
            properties = {column.name: self._json_value(column) for column in self.columns}
            properties["redacted"] = _Redacted(flags, joined=False)
            geometry = _AsJson(AsGeoJSON("location", precision=GEOJSON_DECIMALS))
            if shape == "feature":
                exprs["j"] = JsonObject({"type": Value("Feature"), "id": F("id"), "geometry": geometry,
                                         "properties": JsonObject(properties, text=False)})
            else:
                exprs["j"] = JsonObject({"id": F("id"), **properties, "location": geometry})
        if with_flags:
            for name, flag in flags.items():
                exprs[f"v_{name}"] = flag
        qs = self.base
        if after is not None:
            qs = qs.filter(id__gt=after)
        qs = qs.order_by("id") if after is not None or limit is not None else qs.order_by()
        leading = ("id",) if with_flags or shape in ("csv", "cells") else ()
        qs = qs.annotate(**exprs).values_list(*leading, *exprs.keys())
        return qs[:limit] if limit is not None else qs

    def _flag(self, name: str) -> Expression:
        q = self.personal_q[name]
        if isinstance(q, bool):
            return Value(q, output_field=BooleanField())
        return Case(When(q, then=Value(True)), default=Value(False), output_field=BooleanField())

    def _redact(self, column: Column, value: Expression) -> Expression:
        if column.name not in self.personal:
            return value
        q = self.personal_q[column.name]
        if q is True:
            return value
        if q is False:
            return Value(None, output_field=TextField())
        return Case(When(q, then=value), default=Value(None))

    def _json_value(self, column: Column) -> Expression:
        if column.kind == "geometry":
            value: Expression = _AsJson(AsGeoJSON(column.source, precision=GEOJSON_DECIMALS))
        else:
            value = F(column.source)
        return self._redact(column, value)

    def _csv_value(self, column: Column) -> Expression:
        source = F(column.source)
        if column.kind == "time":
            value: Expression = _IsoTime(source)
        elif column.kind == "list":
            value = _Joined(source)
        elif column.kind == "json":
            value = Func(source, template="(%(expressions)s)::text", output_field=TextField())
        elif column.kind == "geometry":
            value = AsGeoJSON(column.source, precision=GEOJSON_DECIMALS)
        elif column.kind == "text":
            value = _NoFormula(source)
        else:
            value = source
        return self._redact(column, value)

    def _cell_value(self, column: Column) -> Expression:
        source = F(column.source)
        if column.kind == "integer":
            value: Expression = Cast(source, BigIntegerField())
        elif column.kind == "number":
            value = Cast(source, FloatField())
        elif column.kind == "time":
            value = source
        elif column.kind == "list":
            value = _Joined(source)
        elif column.kind == "geometry":
            value = AsGeoJSON(column.source, precision=GEOJSON_DECIMALS)
        else:  # text, and json and uuid as their text
            value = Cast(source, TextField())
        return self._redact(column, value)

    def cell_types(self) -> list[str]:
        """The PostgreSQL types of a "cells" row (flags=False), in order."""
        return ["uuid", *(CELL_TYPES.get(c.kind, "text") for c in self.columns), "float8", "float8", "text"]

    def sql(self, **kwargs) -> tuple[str, tuple]:
        return self.rows(**kwargs).query.sql_with_params()

    def count_up_to(self, limit: int) -> int:
        """How many records the read returns, counting no further than `limit`."""
        return self.base.order_by()[:limit].count()


def records_query(user, record_type: str, flt: RecordFilter) -> RecordQuery:
    """The records of `record_type` this user may see that match `flt`, redacted for them."""
    model = MODELS[record_type]
    scope = permissions.record_scope_q(user)
    base = model.objects.all()
    if scope is False:
        base = base.none()
    elif scope is not True:
        base = base.filter(scope)
    base = base.filter(flt.q())
    columns = COLUMNS[record_type]
    personal_set = permissions.PERSONAL_FIELDS.get(record_type, frozenset())
    personal = tuple(c.name for c in columns if c.name in personal_set)
    return RecordQuery(
        user=user, record_type=record_type, filter=flt, base=base, columns=columns, personal=personal,
        personal_q=permissions.personal_fields_q(user, record_type),
    )


def read_basis(user, query: RecordQuery) -> tuple[str, dict[str, Any]]:
    """(purpose, details) for the s.62 row of a read that returns personal data: the
    purposes of the grants that opened fields, or the relationship that did."""
    sharing = permissions.sharing_of(user)
    grants = sharing.purposes(query.record_type, query.open_fields)
    details: dict[str, Any] = {"fields": query.open_fields}
    if grants:
        details["grants"] = [g.grant_id for g in grants]
        return "; ".join(dict.fromkeys(g.purpose for g in grants)), details
    roles = permissions.roles_of(user)
    if Role.ADMIN in roles:
        return "administration of the partnership's records", details
    if Role.SUPERVISOR in roles:
        return "supervision and review of field records", details
    if sharing.rule_keys:
        details["rules"] = list(sharing.rule_keys)
    return "operational use under the information sharing protocol", details
