"""Writing record rows (selectors.RecordQuery layouts) as GeoJSON, JSON and CSV.

PostgreSQL built each row (JSON text, or CSV values); here they are only joined, or
spliced into a page (`orjson.Fragment`) without being parsed. The DRF renderer classes
exist for the views' declarations; the bytes are made here.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

import orjson
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer

from .selectors import RecordQuery
from .streams import RecordStream

GEOJSON_TYPE = "application/geo+json"
CSV_TYPE = "text/csv; charset=utf-8"


class GeoJSONRenderer(JSONRenderer):
    media_type = GEOJSON_TYPE
    format = "geojson"


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return orjson.dumps(data)  # errors only: data itself is streamed by the view


class OpenAPIRenderer(JSONRenderer):
    media_type = "application/vnd.oai.openapi+json"
    format = "openapi"


class FirstRendererNegotiation(DefaultContentNegotiation):
    """Answer JSON whatever `Accept` (or DRF's `format` override) says: the view reads
    `format` itself, there is no HTML to offer, and a browser or a desktop tool asking for
    `text/html, */*` is better served JSON than a 406."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def record_fragment(row: tuple) -> orjson.Fragment:
    """The JSON text PostgreSQL built for a row ("feature" or "record" shape), spliced in."""
    return orjson.Fragment(row[1])


def geojson_body(features: Iterable[list[str]]) -> Iterator[bytes]:
    """A FeatureCollection from chunks of Feature texts."""
    yield b'{"type":"FeatureCollection","features":['
    first = True
    for texts in features:
        body = ",".join(texts).encode()
        yield body if first else b"," + body
        first = False
    yield b"]}"


def csv_header(query: RecordQuery) -> list[str]:
    return ["id", *(c.name for c in query.columns), "longitude", "latitude", "redacted"]


def csv_body(query: RecordQuery, blocks: Iterable[bytes]) -> Iterator[bytes]:
    """The header, then PostgreSQL's own CSV (COPY … FORMAT csv: "\\n" line ends)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(csv_header(query))
    yield buffer.getvalue().encode()
    yield from blocks


def stream_body(fmt: str, query: RecordQuery, stream: RecordStream) -> Iterator[bytes]:
    """The bytes of an opened stream, as GeoJSON or CSV."""
    if fmt == "csv":
        return csv_body(query, stream.csv_blocks())
    return geojson_body(stream.features())
