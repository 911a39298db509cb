"""Request bodies within limits: bytes, and how deep JSON may nest.

Bytes are bounded before anything is parsed; depth after orjson has parsed (it stops
at 1024 levels itself), before anything else looks at the value: deep values break
code that recurses (orjson.dumps stops at 254 levels, repr and the stdlib json raise
RecursionError, PostgreSQL's jsonb has its own stack limit), never a 500. Every JSON
body has JSON_MAX_DEPTH; a push's mutations also have SYNC_MAX_MUTATION_DEPTH each,
tighter, so one too deep is rejected alone (push.py) while its neighbours apply.

The DRF parsers here replace DRF's own for every API view (REST_FRAMEWORK's
DEFAULT_PARSER_CLASSES): theirs read a body whole, with no byte limit, and DRF's JSON
parser (the stdlib's) raises RecursionError, a 500, on deep input.
"""
from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django.http import QueryDict
from rest_framework.parsers import BaseParser

# The module, not the name: errors imports DRF's views, whose APIView loads these parsers.
from fieldsync import errors

_CONTAINERS = (dict, list)


def nests_deeper(value: Any, limit: int) -> bool:
    """Whether `value` nests more than `limit` levels of objects and arrays (a scalar is
    0 levels, `[]` one). Stops `limit` levels down, so it never recurses further."""
    if type(value) is dict:
        children = value.values()
    elif type(value) is list:
        children = value
    else:
        return False
    if limit < 1:
        return True
    return any(type(child) in _CONTAINERS and nests_deeper(child, limit - 1) for child in children)


def text_nests_deeper(text: bytes, value: Any, limit: int) -> bool:
    """`nests_deeper` for a value parsed from (or serialised to) `text`: a value cannot nest
    deeper than it has brackets, so counting them (at C speed) settles almost every case
    without walking the value."""
    if text.count(b"[") + text.count(b"{") <= limit:
        return False
    return nests_deeper(value, limit)


def too_deep(limit: int) -> errors.ApiError:
    return errors.ApiError("too_deep", f"The JSON nests deeper than {limit} levels.", status_code=400)


def json_loads(body: bytes, *, max_depth: int | None) -> Any:
    """orjson.loads, with everything it raises a clean 400, and the depth checked when
    `max_depth` is given (a caller that checks depth itself, per part, passes None)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):  # orjson's own 1024 levels
            raise too_deep(max_depth or 1024) from None
        raise errors.ApiError("malformed_json", f"The body is not valid JSON: {exc}.", status_code=400) from None
    if max_depth is not None and text_nests_deeper(body, value, max_depth):
        raise too_deep(max_depth)
    return value


def read_limited(stream, limit: int, declared: int | None = None) -> bytes:
    """At most `limit` bytes of a body, or 413 too_large (said by Content-Length or found
    by reading one byte more)."""
    if declared is not None and declared > limit:
        raise errors.ApiError("too_large", f"The body is larger than {limit} bytes.", status_code=413)
    body = stream.read(limit + 1) if stream is not None else b""
    if len(body) > limit:
        raise errors.ApiError("too_large", f"The body is larger than {limit} bytes.", status_code=413)
    return body


def declared_length(meta: dict) -> int | None:
    """The Content-Length a request declares (ASCII digits, else 400: fieldsync/wsgi.py
    refuses such a header before Django in production), or None without one."""
    # Imported here: DRF imports this module (DEFAULT_PARSER_CLASSES) while fieldsync.errors,
    # which fieldsync.parsing needs, is still being imported.
    from fieldsync import parsing

    return parsing.integer("Content-Length", meta.get("CONTENT_LENGTH") or None, minimum=0)


def _declared_length(parser_context: dict | None) -> int | None:
    request = (parser_context or {}).get("request")
    return declared_length(request.META) if request is not None else None


class BoundedJSONParser(BaseParser):
    """application/json within API_MAX_BODY_BYTES and JSON_MAX_DEPTH, parsed by orjson."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        body = read_limited(stream, settings.API_MAX_BODY_BYTES, _declared_length(parser_context))
        return json_loads(body, max_depth=settings.JSON_MAX_DEPTH)


class BoundedFormParser(BaseParser):
    """application/x-www-form-urlencoded within API_MAX_BODY_BYTES (and Django's
    DATA_UPLOAD_MAX_NUMBER_FIELDS); flat, so no depth to bound."""

    media_type = "application/x-www-form-urlencoded"

    def parse(self, stream, media_type=None, parser_context=None) -> QueryDict:
        body = read_limited(stream, settings.API_MAX_BODY_BYTES, _declared_length(parser_context))
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return QueryDict(body, encoding=encoding)
        except TooManyFieldsSent:
            raise errors.ApiError("too_large", "The form has too many fields.", status_code=413) from None
