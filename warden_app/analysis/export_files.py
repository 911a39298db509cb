"""The four export file formats: which are streamed too, their media types, and writing an
opened record stream into a file of each.

CSV and GeoJSON are the streamed bytes written to a file; XLSX and GeoPackage are files only
(a zip and an SQLite database cannot be sent before they are finished), written from the
stream's typed "cells" rows. All four come from one `RecordQuery`, so the records, columns
and redaction are the same in each, and from one `RecordStream`, whose disclosure row is
committed before the first row is read.
"""
from __future__ import annotations

from .geopackages import BNG_SRID, GPKG_TYPE, gpkg_write, srs_definitions
from .renderers import CSV_TYPE, GEOJSON_TYPE, stream_body
from .selectors import RecordQuery
from .streams import RecordStream
from .workbooks import XLSX_MAX_RECORDS, XLSX_TYPE, TooManyRows, xlsx_write

STREAMED_FORMATS = ("geojson", "csv")
FILE_ONLY_FORMATS = ("xlsx", "gpkg")
MEDIA_TYPES = {"csv": CSV_TYPE, "geojson": GEOJSON_TYPE, "xlsx": XLSX_TYPE, "gpkg": GPKG_TYPE}

__all__ = ["FILE_ONLY_FORMATS", "MEDIA_TYPES", "STREAMED_FORMATS", "XLSX_MAX_RECORDS", "TooManyRows",
           "export_file_write"]


def export_file_write(fmt: str, query: RecordQuery, stream: RecordStream, path: str, *, title: str,
                      description: str) -> None:
    """Write the opened `stream` of `query` to the file `path` in format `fmt`."""
    if fmt == "xlsx":
        xlsx_write(path, query, stream.cells())
    elif fmt == "gpkg":
        gpkg_write(path, query, stream.cells(srid=BNG_SRID), title=title, description=description,
                   srs=srs_definitions())
    else:
        with open(path, "wb") as out:
            for piece in stream_body(fmt, query, stream):
                out.write(piece)
