"""Schemathesis against the API's own OpenAPI documents: every operation, fuzzed through
the real WSGI application (in process, so the test database and its fixtures apply).

Two documents: /api/schema/ (drf-spectacular: sync protocol, records, exports,
aggregates, DPO, escalations) and /ogc/api (the OGC API - Features definition). Each
operation is called as a role that may use it, and every answer must be:

- not a 5xx (`not_a_server_error`);
- a status the operation documents (`status_code_conformance`);
- of a documented media type (`content_type_conformance`);
- valid against the documented schema of that status and type (`response_schema_conformance`).

Runs are deterministic (Hypothesis `derandomize`, a fixed seed, no example database), so
CI fails only when code or schema change. Every operation runs with generated values
everywhere ("generated": ids mostly unknown, so mostly 4xx); those whose path or body names
things run again with those ids pointing at records, exports, escalations, devices and a
user that exist ("known"), so the success bodies are checked against their schemas too.

Nothing is excluded: streamed GeoJSON and CSV are read whole and checked like any body
(CSV is documented as a string), and schemathesis' own unexpected-method cases (405) stay.
"""
from __future__ import annotations

import base64
import hashlib
import struct
import uuid
import zlib

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (  # the registered checks, by name
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from fieldsync.wsgi import application
from tests.analysis.conftest import PASSWORD, build_analysis_world
from warden_app.analysis.ogc import COLLECTIONS, openapi_document


def closing(app):
    """The application as a WSGI server runs it: every response iterable closed (PEP 3333).
    Schemathesis' WSGI client reads the body but never closes it, and Django's close() is
    what ends a stream's reader transaction (a stream left open would hold its snapshot and
    block the test database's flush for ever) and sends request_finished."""
    def wsgi(environ, start_response):
        result = app(environ, start_response)
        try:
            return [b"".join(result)]
        finally:
            if hasattr(result, "close"):
                result.close()

    return wsgi


# Explicit, so a schemathesis.toml in a working directory cannot change what CI runs.
CONFIG = schemathesis.Config.from_dict({"seed": 20261124})
API = schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG)
API.app = closing(application)
# /ogc/api answers only to a reader (there is no user before the database is set up), so
# the OGC document is taken from the function that serves it; test_ogc_document_is_served
# checks the endpoint serves exactly this.
OGC_BASE = "http://localhost/ogc/"
OGC = schemathesis.openapi.from_dict(openapi_document(OGC_BASE), config=CONFIG)
OGC.app = closing(application)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# 25 operations + 7 OGC, each with its coverage cases (schemathesis' deterministic boundary
# and negative values) plus this many generated examples; the "known" runs (13 + 3) take
# fewer. About 1.5 minutes on 2 cores (~6,400 requests).
MAX_EXAMPLES = 100
KNOWN_MAX_EXAMPLES = 30
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        # Each example is a full request through Django and PostgreSQL, well over Hypothesis'
        # idea of a fast example; the examples themselves stay small.
        HealthCheck.too_slow,
        # On purpose: one world per operation, shared by its examples (rebuilding it per
        # example would cost ten times the run); what an example changes stays in it, and
        # the run is deterministic all the same.
        HealthCheck.function_scoped_fixture,
    ],
)

# Who calls what: the role each part of the API is for (a 403 for everyone else is
# documented, but would test little).
DEVICE, ANALYST_TOKEN, ANALYST, SUPERVISOR, DPO, NOBODY = "device", "api_token", "analyst", "supervisor", "dpo", None
CALLERS = (
    ("/api/v1/devices/enrol", NOBODY),  # credentials go in the body
    ("/api/v1/devices/", SUPERVISOR),  # revoke: the supervisor of the device's user
    ("/api/v1/sync/", DEVICE),
    ("/api/v1/attachments/", DEVICE),
    ("/api/v1/records", ANALYST_TOKEN),
    ("/api/v1/exports", ANALYST_TOKEN),
    ("/api/v1/tokens", ANALYST),  # Basic: a token cannot make tokens (403)
    ("/api/v1/aggregates/", ANALYST),  # session or Basic only (no API tokens)
    ("/api/v1/dpo/", DPO),
    ("/api/v1/escalations", SUPERVISOR),
    ("/ogc/", ANALYST_TOKEN),
)


def basic(username: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{PASSWORD}".encode()).decode()


def tiny_png() -> bytes:
    """A valid 1x1 PNG, so an upload under its own hash is stored (201, then 200)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    pixels = zlib.compress(b"\x00\x00")  # one row: filter byte, one pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


class FuzzWorld:
    """The demo partnership with records (tests/analysis/conftest.py), plus what the
    path parameters of the "known" run point at."""

    def __init__(self):
        from fieldsync.sync.services.devices import device_enrol
        from warden_app.accountability.services.escalation import record_escalate
        from warden_app.models import Organisation, PartnerEndpoint
        from warden_app.services.api_tokens import api_token_create
        from warden_app.services.exports import export_build, export_request

        world = build_analysis_world()
        users = world.users
        self.device_token = world.handheld("warden_leigh").token
        _, self.api_token = api_token_create(user=users["analyst"], name="schemathesis")
        # Another of the analyst's tokens, for DELETE /api/v1/tokens/{token_id} to revoke.
        self.spare_token_id = api_token_create(user=users["analyst"], name="spare")[0].pk
        self.records = {
            "observation": world.records["council_leigh"],
            "street_audit": world.records["audit"],
            "audit_item": world.records["litter"],
        }
        export = export_request(user=users["analyst"], record_type="observation", fmt="geojson", params={})
        self.export_id = str(export_build(export_id=export.pk).pk)
        endpoint = PartnerEndpoint.objects.create(
            name="Police incidents", organisation=Organisation.objects.get(name="Greater Manchester Police"),
            url="https://partner.invalid/incidents", kind=PartnerEndpoint.Kind.POLICE_INCIDENT,
        )
        self.endpoint_id = endpoint.pk
        self.escalation_id = str(record_escalate(
            user=users["supervisor_leigh"], record_type="observation", record_id=uuid.UUID(self.records["observation"]),
            endpoint=endpoint, purpose="INC-1 (referral)",
        ).pk)
        # A second handheld, for the supervisor to revoke (the fuzzing one stays usable).
        self.spare_device_id = str(device_enrol(username="warden_leigh", password=PASSWORD, label="spare",
                                                platform="test").device.pk)

    def headers(self, operation) -> dict[str, str]:
        path = operation.full_path  # OGC paths are relative to its server, /ogc
        role = next((role for prefix, role in CALLERS if path.startswith(prefix)), "unmapped")
        assert role != "unmapped", f"no caller for {path}: add it to CALLERS"
        return {
            NOBODY: {},
            DEVICE: {"Authorization": f"Bearer {self.device_token}"},
            ANALYST_TOKEN: {"Authorization": f"Bearer {self.api_token}"},
            ANALYST: {"Authorization": basic("analyst")},
            SUPERVISOR: {"Authorization": basic("supervisor_leigh")},
            DPO: {"Authorization": basic("dpo")},
        }[role]

    def point_at_known(self, case) -> None:
        """Path parameters (and the ids or credentials in a body) naming things that exist;
        the rest of the case stays generated."""
        params = case.path_parameters or {}
        path = case.operation.path
        if path == "/api/v1/devices/enrol" and isinstance(case.body, dict):
            case.body.update(username="warden_leigh", password=PASSWORD)
        if path == "/api/v1/escalations" and isinstance(case.body, dict):
            case.body.update(record_type="observation", record_id=self.records["observation"],
                             endpoint=self.endpoint_id)
        if "record_id" in params:
            if params.get("record_type") not in self.records:
                params["record_type"] = "observation"
            params["record_id"] = self.records[params["record_type"]]
        if "featureId" in params:
            collection = params["collectionId"] if params.get("collectionId") in COLLECTIONS else "observations"
            params["collectionId"] = collection
            params["featureId"] = self.records[COLLECTIONS[collection][0]]
        if "export_id" in params:
            params["export_id"] = self.export_id
        if "escalation_id" in params:
            params["escalation_id"] = self.escalation_id
        if "device_id" in params:
            params["device_id"] = self.spare_device_id
        if "token_id" in params:
            params["token_id"] = self.spare_token_id
        if path == "/api/v1/attachments/{sha256}":
            body = tiny_png()
            case.body, case.media_type = body, "image/png"
            params["sha256"] = hashlib.sha256(body).hexdigest()


@pytest.fixture
def fuzz_world(transactional_db, settings, tmp_path, monkeypatch):
    """Committed data (streams read it on a second connection), rebuilt for each operation."""
    from celery.app.task import Task
    from django.core.cache import cache

    # Throttling is documented (429) and tested in tests/sync; here it would only stop the
    # fuzzing after the first hundred requests.
    settings.SYNC_DEVICE_RATE = settings.SYNC_ENROL_RATE = "1000000/min"
    settings.MEDIA_ROOT = tmp_path
    # Exports, escalations and thumbnails queue Celery tasks: kept here, so nothing reaches
    # the Redis broker that other runs' workers share.
    monkeypatch.setattr(Task, "apply_async", lambda self, *args, **kwargs: None)
    cache.clear()  # throttle counters of earlier tests live in Redis
    return FuzzWorld()


def call_and_check(case, world: FuzzWorld) -> None:
    case.call_and_validate(headers=world.headers(case.operation), checks=CHECKS)


@API.parametrize()
@FUZZ_SETTINGS
def test_api_generated(case, fuzz_world):
    call_and_check(case, fuzz_world)


def names_things(ctx) -> bool:
    """Operations whose path, or body, names things that must exist to get past a 404/401."""
    return "{" in ctx.operation.path or ctx.operation.path in ("/api/v1/devices/enrol", "/api/v1/escalations")


@API.include(names_things).parametrize()
@settings(FUZZ_SETTINGS, max_examples=KNOWN_MAX_EXAMPLES)
def test_api_known(case, fuzz_world):
    fuzz_world.point_at_known(case)
    call_and_check(case, fuzz_world)


@OGC.parametrize()
@FUZZ_SETTINGS
def test_ogc_generated(case, fuzz_world):
    call_and_check(case, fuzz_world)


@OGC.include(path_regex=r"\{").parametrize()
@settings(FUZZ_SETTINGS, max_examples=KNOWN_MAX_EXAMPLES)
def test_ogc_known(case, fuzz_world):
    fuzz_world.point_at_known(case)
    call_and_check(case, fuzz_world)


def test_ogc_document_is_served(fuzz_world):
    """What test_ogc_* fuzz is what /ogc/api serves."""
    from django.test import Client

    response = Client().get("/ogc/api", HTTP_AUTHORIZATION=f"Bearer {fuzz_world.api_token}", HTTP_HOST="localhost")
    assert response.status_code == 200, response.content
    assert response.json() == openapi_document(OGC_BASE)
