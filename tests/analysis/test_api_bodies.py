"""Bodies of the DRF API views are bounded by the application, not only by nginx
(fieldsync/sync/bodies.py, REST_FRAMEWORK's DEFAULT_PARSER_CLASSES): bytes
(API_MAX_BODY_BYTES, 413 too_large) and JSON depth (JSON_MAX_DEPTH, and orjson's own 1024
levels: 400 too_deep), refused in the protocol's error shape. Sent to the records API
(POST, for polygons too long for a URL) by a signed-in analyst, over the real stack."""
from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.views import APIView

from fieldsync.sync.bodies import BoundedFormParser, BoundedJSONParser
from tests.sync.pushkit import assert_error

URL = "/api/v1/records/observation"


def post(world, body: str | bytes, content_type: str = "application/json"):
    return world.client("analyst").generic("POST", URL, body, content_type=content_type)


@pytest.mark.parametrize("levels", [settings.JSON_MAX_DEPTH, 1000, 1030, 100_000])
def test_json_nesting_past_the_limit_is_400_too_deep(world, levels):
    """The stdlib parser DRF uses raised RecursionError (a 500) on such bodies."""
    body = '{"polygon": ' + "[" * levels + "1" + "]" * levels + "}"
    assert_error(post(world, body), 400, "too_deep")


def test_json_at_the_depth_limit_is_read(world):
    """A filter value nested JSON_MAX_DEPTH - 1 levels down is parsed and judged as a filter."""
    levels = settings.JSON_MAX_DEPTH - 1
    body = '{"qualifier": ' + "[" * levels + '"x"' + "]" * levels + "}"
    response = post(world, body)
    assert response.status_code == 400 and response.json()["code"] == "invalid", response.content


def test_malformed_json_is_400(world):
    assert_error(post(world, b'{"polygon": '), 400, "malformed_json")


def test_a_json_body_over_the_byte_limit_is_413(world, settings):
    settings.API_MAX_BODY_BYTES = 1000
    body = '{"incident_type": "noise", "pad": "' + "x" * 1000 + '"}'
    assert_error(post(world, body), 413, "too_large")
    settings.API_MAX_BODY_BYTES = len(body)
    assert post(world, body).status_code != 413


def test_a_form_body_over_the_byte_limit_is_413(world, settings):
    settings.API_MAX_BODY_BYTES = 1000
    body = "incident_type=noise&pad=" + "x" * 1000
    assert_error(post(world, body, "application/x-www-form-urlencoded"), 413, "too_large")


def test_multipart_is_not_parsed(world):
    body = b"--b\r\nContent-Disposition: form-data; name=\"incident_type\"\r\n\r\nnoise\r\n--b--\r\n"
    assert_error(post(world, body, "multipart/form-data; boundary=b"), 415, "unsupported_media_type")


def api_views(patterns=None):
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            yield from api_views(entry.url_patterns)
        elif isinstance(entry, URLPattern):
            view = getattr(entry.callback, "cls", None)
            if isinstance(view, type) and issubclass(view, APIView):
                yield entry.pattern, view


def test_every_api_view_parses_bodies_within_the_limits():
    """No DRF view of the project brings parsers of its own: each body goes through ours."""
    views = list(api_views())
    assert len(views) > 20
    for pattern, view in views:
        assert {type(p) for p in view().get_parsers()} <= {BoundedJSONParser, BoundedFormParser}, (pattern, view)
