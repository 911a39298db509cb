"""Export files for GIS: an OGC GeoPackage 1.3 of a read's "cells" rows, in EPSG:27700.

Written with Python's own sqlite3: the three tables the standard requires
(`gpkg_spatial_ref_sys`, `gpkg_contents`, `gpkg_geometry_columns`), one feature table
named after the record type, and each location as a GeoPackage geometry blob (the "GP"
header, then the point's WKB). Coordinates are British National Grid metres, transformed
by PostGIS in the read itself, so QGIS opens the layer on the grid that the partnership's
other layers and the hotspot grid use (domain.md). The attribute columns are the CSV's,
typed (INTEGER, REAL, DATETIME, TEXT), except longitude/latitude, which the geometry holds.

Rows go in a chunk at a time, so memory stays flat however many there are; SQLite keeps
the file on disk.
"""
from __future__ import annotations

import sqlite3
import struct
from collections.abc import Iterable
from datetime import UTC, datetime

from django.db import connection

from .selectors import RecordQuery

GPKG_TYPE = "application/geopackage+sqlite3"
BNG_SRID = 27700
WGS84_SRID = 4326
# PRAGMA application_id "GPKG" and user_version 10300: what marks a file as GeoPackage 1.3.
APPLICATION_ID = 0x47504B47
USER_VERSION = 10300
_SQL_TYPES = {"integer": "INTEGER", "number": "REAL", "time": "DATETIME"}
# Blob header: magic, version 0, flags 0b00000001 (little-endian, no envelope: a point's
# envelope is the point itself, which the standard lets a writer leave out), srs_id.
_HEADER = b"GP" + bytes([0, 0b00000001]) + struct.pack("<i", BNG_SRID)
_WKB_POINT = struct.Struct("<BIdd")  # byte order 1 (little-endian), type 1 (Point), x, y

_CORE_TABLES = (
    """CREATE TABLE gpkg_spatial_ref_sys (
        srs_name TEXT NOT NULL, srs_id INTEGER NOT NULL PRIMARY KEY, organization TEXT NOT NULL,
        organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT)""",
    """CREATE TABLE gpkg_contents (
        table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, identifier TEXT UNIQUE,
        description TEXT DEFAULT '',
        last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
        CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id))""",
    """CREATE TABLE gpkg_geometry_columns (
        table_name TEXT NOT NULL, column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL,
        srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
        CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
        CONSTRAINT uk_gc_table_name UNIQUE (table_name),
        CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
        CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id))""",
)


def attribute_columns(query: RecordQuery) -> list[tuple[str, str]]:
    """(name, SQLite type) of the feature table's attributes, in the CSV's order."""
    return [("id", "TEXT"), *((c.name, _SQL_TYPES.get(c.kind, "TEXT")) for c in query.columns),
            ("redacted", "TEXT")]


def srs_definitions() -> dict[int, tuple[str, str]]:
    """(name, WKT) of WGS 84 and the British National Grid, as PostGIS defines them."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT srid, srtext FROM spatial_ref_sys WHERE srid IN (%s, %s)", [WGS84_SRID, BNG_SRID])
        wkt = dict(cursor.fetchall())
    return {WGS84_SRID: ("WGS 84 geodetic", wkt[WGS84_SRID]),
            BNG_SRID: ("OSGB36 / British National Grid", wkt[BNG_SRID])}


def gpkg_write(path, query: RecordQuery, chunks: Iterable[list[tuple]], *, title: str, description: str,
               srs: dict[int, tuple[str, str]]) -> int:
    """Write the GeoPackage to `path` (a new file) from chunks of "cells" rows read in
    EPSG:27700; the record count."""
    table = query.record_type  # ours, a lower-case identifier: safe to quote as a name
    columns = attribute_columns(query)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        # A temporary file built in one go: no journal to keep it crash-safe.
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {USER_VERSION}")
        db.execute("BEGIN")
        for statement in _CORE_TABLES:
            db.execute(statement)
        db.executemany("INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)", [
            ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", "undefined cartesian coordinate reference system"),
            ("Undefined geographic SRS", 0, "NONE", 0, "undefined", "undefined geographic coordinate reference system"),
            *((name, srid, "EPSG", srid, wkt, None) for srid, (name, wkt) in srs.items()),
        ])
        fields = ", ".join(f'"{name}" {sql_type}' for name, sql_type in columns)
        db.execute(f'CREATE TABLE "{table}" (fid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, geom POINT, {fields})')
        db.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier, description, srs_id) "
                   "VALUES (?, 'features', ?, ?, ?)", (table, title, description, BNG_SRID))
        db.execute("INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', 'POINT', ?, 0, 0)", (table, BNG_SRID))
        insert = (f'INSERT INTO "{table}" (geom, {", ".join(f"{chr(34)}{n}{chr(34)}" for n, _ in columns)}) '
                  f"VALUES (?{', ?' * len(columns)})")
        kinds = ["uuid", *(c.kind for c in query.columns)]
        count, extent = 0, None
        for chunk in chunks:
            rows = []
            for row in chunk:
                *values, x, y, redacted = row
                rows.append((_point(x, y), *(_value(k, v) for k, v in zip(kinds, values, strict=True)), redacted))
                extent = (x, y, x, y) if extent is None else (
                    min(extent[0], x), min(extent[1], y), max(extent[2], x), max(extent[3], y))
            db.executemany(insert, rows)
            count += len(rows)
        if extent is not None:
            db.execute("UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ? WHERE table_name = ?",
                       (*extent, table))
        db.execute("COMMIT")
    finally:
        db.close()
    return count


def _point(x: float, y: float) -> bytes:
    return _HEADER + _WKB_POINT.pack(1, 1, x, y)


def _value(kind: str, value):
    if value is None or kind in ("integer", "number"):
        return value
    if kind == "time":
        # GeoPackage DATETIME: ISO 8601 in UTC, to the millisecond.
        moment: datetime = value.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return str(value)
