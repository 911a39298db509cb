"""Set-based reads and writes of a record type's rows.

A push of 500 mutations writes each table with one statement (`unnest` of column
arrays) instead of 500 ORM saves; this is where most of the push's speed comes from.
Rows are dicts: wire fields by name in their cleaned Python form (points as (lon, lat)),
plus the engine's columns and the type's server columns.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import orjson
import psycopg
from django.db import connection

from fieldsync import db

from .fields import FieldSpec, line_ewkt, point_ewkt, truthy_sql, wire_sql
from .registry import RecordType, Row

ENGINE_COLUMNS = ("id", "version", "created_at", "updated_at", "client_time", "deleted_at", "form_id")
FORM_FIELD = "form_version"


def _sql_type(rtype: RecordType, column: str) -> str:
    field = next(f for f in rtype.model._meta.concrete_fields if f.column == column)
    return field.db_type(connection)


@cache
def _column_plan(rtype: RecordType) -> list[tuple[str, str, str, FieldSpec | None]]:
    """(row key, column, SQL expression over `v.<column>`, spec) for every stored column."""
    plan: list[tuple[str, str, str, FieldSpec | None]] = []
    for column in (*ENGINE_COLUMNS, *rtype.server_columns):
        sql_type = _sql_type(rtype, column)
        plan.append((column, column, f"v.{column}::{sql_type}", None))
    for spec in rtype.fields:
        if spec.name == FORM_FIELD:
            continue  # stored as form_id
        column = spec.db_column
        if spec.kind in ("point", "line"):
            expr = f"ST_GeomFromEWKT(v.{column})"
        elif spec.kind in ("text_list", "photos"):
            expr = f"ARRAY(SELECT jsonb_array_elements_text(v.{column}::jsonb))"
        elif spec.kind == "json_list":
            expr = f"v.{column}::jsonb"
        else:
            expr = f"v.{column}::{_sql_type(rtype, column)}"
        plan.append((spec.name, column, expr, spec))
    return plan


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


# How a cleaned value of each kind travels, where it is not as it is: in the update's
# text[] arrays (geometry as EWKT, lists as JSON), and in COPY's text format.
_PARAM_FORM = {
    "point": point_ewkt, "line": line_ewkt, "json_list": _json_text,
    "text_list": _json_text, "photos": _json_text,
}
_COPY_FORM = {**_PARAM_FORM, "text_list": db.text_array, "photos": db.text_array}


def _param(spec: FieldSpec | None, value: Any) -> Any:
    if spec is None or value is None or spec.kind not in _PARAM_FORM:
        return value
    return _PARAM_FORM[spec.kind](value)


def _param_sql_type(spec: FieldSpec | None, rtype: RecordType, column: str) -> str:
    """The array type a column's values travel in: text for geometry (EWKT) and lists
    (JSON), the column's own base type otherwise."""
    if spec is not None and spec.kind in _PARAM_FORM:
        return "text[]"
    sql_type = _sql_type(rtype, column)
    if sql_type.startswith("varchar"):
        return "text[]"
    return sql_type.split("(")[0] + "[]"


@cache
def _update_sql(rtype: RecordType) -> str:
    plan = _column_plan(rtype)
    sets = ", ".join(f"{column} = {expr}" for _, column, expr, _ in plan if column != "id")
    arrays = ", ".join(f"%s::{_param_sql_type(spec, rtype, column)}" for _, column, _, spec in plan)
    aliases = ", ".join(column for _, column, _, _ in plan)
    return (
        f"UPDATE {rtype.table} AS t SET {sets} FROM unnest({arrays}) AS v({aliases}) "
        f"WHERE t.id = v.id::uuid"
    )


def _columns_of(rtype: RecordType, rows: list[Row]) -> list[list[Any]]:
    plan = _column_plan(rtype)
    return [[_param(spec, row.get(key)) for row in rows] for key, _, _, spec in plan]


@cache
def _copy_plan(rtype: RecordType) -> tuple[tuple[str, ...], tuple[tuple[int, Any], ...]]:
    """(row keys in column order, (position, converter) of the columns COPY needs converted)."""
    plan = _column_plan(rtype)
    keys = tuple(key for key, _, _, _ in plan)
    converters = tuple(
        (i, _COPY_FORM[spec.kind]) for i, (_, _, _, spec) in enumerate(plan)
        if spec is not None and spec.kind in _COPY_FORM
    )
    return keys, converters


@cache
def _copy_sql(rtype: RecordType) -> str:
    columns = ", ".join(column for _, column, _, _ in _column_plan(rtype))
    return f"COPY {rtype.table} ({columns}) FROM STDIN"


@contextmanager
def placed_by_engine() -> Iterator[None]:
    """Tell row triggers that the rows written inside already carry their placement.

    The setting is transaction-local, so a failure (which rolls the transaction or its
    savepoint back) also clears it; it is switched off again straight after a success,
    so any later write in the same transaction is placed by the database as usual.
    """
    with db.cursor() as cursor:
        cursor.execute("SELECT set_config('fieldsync.engine_placed', 'on', true)")
    yield
    with db.cursor() as cursor:
        cursor.execute("SELECT set_config('fieldsync.engine_placed', 'off', true)")


def copy_values(rtype: RecordType, rows: list[Row]) -> list[list[Any]]:
    """The values `copy_rows` sends for new `rows`, column by column: the Python half of
    an insert, which a caller may do while PostgreSQL is busy with something else."""
    keys, converters = _copy_plan(rtype)
    prepared = []
    for row in rows:
        values = [row.get(key) for key in keys]
        for i, convert in converters:
            if values[i] is not None:
                values[i] = convert(values[i])
        prepared.append(values)
    return prepared


def copy_rows(rtype: RecordType, prepared: list[list[Any]]) -> None:
    """New records by COPY, the fastest way in; row triggers (the area) still fire."""
    db.copy_in(_copy_sql(rtype), prepared)


def update_rows(rtype: RecordType, rows: list[Row]) -> None:
    if not rows:
        return
    with db.cursor() as cursor:
        cursor.execute(_update_sql(rtype), _columns_of(rtype, rows))


def server_columns_update(rtype: RecordType, rows: list[Row], columns: list[str]) -> None:
    """Only `columns` (server columns), the version and updated_at of `rows`: the content
    and the location stay out of the SET, so a trigger on the location (the domain's
    placement) does not fire and place the rows a second time."""
    if not rows:
        return
    names = ["version", "updated_at", *columns]
    sets = ", ".join(f"{name} = v.{name}" for name in names)
    arrays = ", ".join(f"%s::{_sql_type(rtype, name)}[]" for name in names)
    with db.cursor() as cursor:
        cursor.execute(
            f"UPDATE {rtype.table} AS t SET {sets} FROM unnest(%s::uuid[], {arrays}) "
            f"AS v(id, {', '.join(names)}) WHERE t.id = v.id",
            [db.uuid_array(row["id"] for row in rows), *([row[name] for row in rows] for name in names)],
        )


@cache
def _select_sql(rtype: RecordType) -> tuple[str, list[tuple[str, FieldSpec | None]]]:
    parts: list[str] = []
    keys: list[tuple[str, FieldSpec | None]] = []
    for key, column, _, spec in _column_plan(rtype):
        if spec is not None and spec.kind == "point":
            parts.append(f"CASE WHEN {column} IS NULL THEN NULL ELSE ARRAY[ST_X({column}), ST_Y({column})] END")
        elif spec is not None and spec.kind == "line":
            parts.append(f"ST_AsGeoJSON({column})::jsonb -> 'coordinates'")
        else:
            parts.append(column)
        keys.append((key, spec))
    return f"SELECT {', '.join(parts)} FROM {rtype.table}", keys


def _from_db(spec: FieldSpec | None, value: Any) -> Any:
    if value is None or spec is None:
        return value
    if spec.kind == "point":
        return (value[0], value[1])
    if spec.kind == "line":
        return tuple((p[0], p[1]) for p in value)
    return value


def load_rows(rtype: RecordType, ids: list, *, lock: bool = False) -> dict[Any, Row]:
    """Current rows by id, optionally locked FOR UPDATE (in id order, to avoid deadlocks)."""
    return load_rows_fetch(rtype, load_rows_send(rtype, ids, lock=lock))


def load_rows_send(rtype: RecordType, ids: list, *, lock: bool = False) -> psycopg.Cursor | None:
    """The first half of `load_rows`: the query, on a cursor of its own, so that in a
    pipeline (db.pipeline) other statements and Python work can go on before the rows
    are read back with `load_rows_fetch`."""
    if not ids:
        return None
    select, _ = _select_sql(rtype)
    sql = f"{select} WHERE id = ANY(%s::uuid[]) ORDER BY id"
    if lock:
        sql += " FOR UPDATE"
    cursor = db.cursor()
    cursor.execute(sql, [db.uuid_array(ids)])
    return cursor


def load_rows_fetch(rtype: RecordType, cursor: psycopg.Cursor | None) -> dict[Any, Row]:
    if cursor is None:
        return {}
    with cursor:  # closing an already closed cursor (a caller's ExitStack) is harmless
        fetched = cursor.fetchall()
    _, keys = _select_sql(rtype)
    rows = {}
    for values in fetched:
        row = {key: _from_db(spec, value) for (key, spec), value in zip(keys, values, strict=True)}
        if row.get("form_id") is not None:
            row[FORM_FIELD] = rtype.policy.form_version_of(row["form_id"])
        rows[row["id"]] = row
    return rows


@cache
def has_form(rtype: RecordType) -> bool:
    """Whether the type's data names its form version (stored as form_id)."""
    return any(spec.name == FORM_FIELD for spec in rtype.fields)


# What a pull reads of the engine's columns: the scope and the change's header.
VIEW_COLUMNS = ("id", "version", "updated_at", "deleted_at", "form_id")


@cache
def view_plan(rtype: RecordType, personal: frozenset[str]) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(SELECT of a pull's view of rows, its value columns, its personal fields): the
    engine's and server columns as values, then the wire JSON of every other field as one
    object's text, then for each personal field its wire JSON and whether it holds anything."""
    columns = (*VIEW_COLUMNS, *rtype.server_columns)
    personal_names = tuple(spec.name for spec in rtype.fields if spec.name in personal)
    common = [spec for spec in rtype.fields if spec.name != FORM_FIELD and spec.name not in personal]
    pairs = ", ".join(f"'{spec.name}', {wire_sql(spec, spec.db_column)}" for spec in common)
    parts = [*columns, "id::text", f"json_build_object({pairs})::text"]
    for spec in rtype.fields:
        if spec.name in personal:
            parts += [f"coalesce(({wire_sql(spec, spec.db_column)})::text, 'null')", truthy_sql(spec, spec.db_column)]
    sql = f"SELECT {', '.join(parts)} FROM {rtype.table} WHERE id = ANY(%s::uuid[])"
    return sql, columns, personal_names


def load_views(rtype: RecordType, ids: list, personal: frozenset[str]) -> dict[Any, tuple[Row, str, str, tuple]]:
    """For a pull page, by id: (row of the engine's and server columns, the id as text,
    the JSON text of the fields that are not `personal` (the form version aside), then
    per personal field of view_plan its JSON text and whether it holds anything, flat).
    PostgreSQL writes the JSON (fields.wire_sql), so a page of a thousand records builds
    no Python value per field."""
    if not ids:
        return {}
    sql, columns, _ = view_plan(rtype, personal)
    width = len(columns)
    with db.cursor() as cursor:
        cursor.execute(sql, [db.uuid_array(ids)])
        fetched = cursor.fetchall()
    views = {}
    for values in fetched:
        row = dict(zip(columns, values, strict=False))
        views[row["id"]] = (row, values[width], values[width + 1], values[width + 2:])
    return views
