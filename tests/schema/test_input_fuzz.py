"""No input is a 500: every query parameter, path parameter and client-controlled header of
every operation, fuzzed through the real application (Django's test client, real PostGIS and
Redis), must get an answer below 500, and on the API (/api/, /ogc/) a refusal must come in
the protocol's error shape {"code", "message", "fields"}.

What is fuzzed comes from the URLconf and the OpenAPI documents, not from a list kept by
hand: every operation of /api/schema/ and of the OGC document, every route of the review
desk and the handheld shell, and every changelist and change page of the admin site.
test_every_route_is_fuzzed fails when a route is added that none of them covers.

Values are drawn from strategies aimed at the parsers: characters for which str.isdigit()
holds but int() fails or reads a non-ASCII digit ('²', '٣', '①'), control characters, NUL,
bidi and BOM marks, very long values, numbers beyond 64 bits, NaN and infinities, date-times
at the edges of the calendar (year 1 east of Greenwich, 9999 west of it, year 0 and 10000,
leap seconds, offsets beyond ±15:59), malformed UUIDs, bboxes and intervals; and headers
as a WSGI server hands them over (Latin-1 text): Authorization in each scheme (Basic with
NUL, newline, non-UTF-8 bytes, no colon or invalid base64; Bearer device and personal
tokens with control characters or a megabyte long), Cookie (a session key with an escaped
NUL), Content-Type, Content-Length (-1, abc, ², beyond 64 bits), X-Forwarded-For, Host,
If-None-Match, If-Modified-Since, Accept, Accept-Language, User-Agent, Origin, Referer.

Each operation first gets a deterministic sweep (every parameter alone with each of the
values the issue names, every header alone with each of its known-bad values) and then
Hypothesis examples mixing them (derandomized, a fixed seed, no example database, no
deadline), so CI fails only when code or documents change.
"""
# Digits that only look like ASCII ones are the point of this file.
# ruff: noqa: RUF001
from __future__ import annotations

import base64
import io
import re
import traceback
import urllib.parse
from dataclasses import dataclass, field

import orjson
import pytest
from django.conf import settings as django_settings
from django.contrib import admin
from django.core.signals import got_request_exception, request_finished, request_started
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from fieldsync.wsgi import application as wsgi_application
from tests.analysis.conftest import PASSWORD, build_analysis_world

# Hypothesis examples per operation, after its sweep. The whole file: about 1.5 minutes on
# 2 cores shared with other work (89 operations; 50 s of CPU).
MAX_EXAMPLES = 25
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],
)
SEED = 20261207

# --- values --------------------------------------------------------------------------------

# The classes issue #15 names, each tried alone in every parameter (the sweep).
SWEEP_VALUES = (
    "²", "٣", "①", "１", "-1", "9" * 40,  # isdigit() but int() fails, non-ASCII digits, beyond 64 bits
    "\x00", "a\x01\x1b[0m\x7f", "\u202e\ufeff",  # control characters, NUL, bidi and BOM marks
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "9999-12-31", "0000-01-01", "10000-01-01",
    "2026-06-30T23:59:60Z", "2026-10-01T00:00:00+23:59", "nan", "1e309",
    "x" * 5000,
)
ODD_VALUES = (
    "", " ", "0", "+1", " 7 ", "1_000", "1e3", "0x10", "-0", "inf", "-inf", "٣٣", "𝟗", "⁹", "߂",
    "1\n", "\n", "\t", "\r", "%00", "'", '"', "\\", "<script>", ";", "&", "=", "?", "#", "/", "..",
    "true", "True", "yes", "on", "2", "null", "[]", "{}",
    "0001-01-01", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999+00:00", "2026-02-30", "2026-13-01",
    "2026-10-01T25:00:00Z", "2026-10-01T00:00:00+24:00", "2026-10-01T00:00:00+15:59", "2026-10-01T00:00:00,5Z",
    "2026-10-01T00:00:00.0000001Z", "2026-W40", "２０２６-01-01", "2026-٠١-01", "20261001", "2026-10",
    "2026-Q0", "2026-Q5", "0000-Q1", "9999-Q4", "0000-01", "9999-12", "10000-01", "2026-00",
    "..", "../..", "2026-01-01/..", "../2026-01-01", "2026-01-02/2026-01-01", "0001-01-01/9999-12-31",
    "/9999-12-31", "0001-01-01T00:00:00+14:00/..", "../9999-12-31T23:59:59-12:00",
    "-180,-90,180,90", "1,2,3", "1,2,3,4,5,6", "nan,0,1,1", "1e309,0,1,1", "²,0,1,1", ",,,", "0,0,0,0",
    "180,90,-180,-90", "1,1,1,1,1,1,1,1",
    "00000000-0000-0000-0000-000000000000", "{12345678-1234-5678-1234-567812345678}",
    "urn:uuid:12345678-1234-5678-1234-567812345678", "12345678123456781234567812345678",
    "١٢٣٤٥٦٧٨-1234-5678-1234-567812345678", "12345678-1234-5678-1234-56781234567８",
    "POLYGON((0 0,1 0,1 1,0 0))", "POLYGON EMPTY", "SRID=27700;POINT(0 0)", '{"type":"Polygon"}',
    "observation", "street_audit", "audit_item", "geojson", "csv", "a,b,,c", "9" * 19, "-" + "9" * 19,
)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
VALUES = st.one_of(
    st.sampled_from(SWEEP_VALUES + ODD_VALUES),
    TEXT,
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.builds(lambda a, b: a + b, st.sampled_from(SWEEP_VALUES + ODD_VALUES), TEXT),
    st.lists(st.sampled_from(SWEEP_VALUES + ODD_VALUES), min_size=2, max_size=5).map(",".join),
)

# Header values as a WSGI server hands them over: Latin-1 text without CR or LF.
LATIN1 = st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=40)
MEGABYTE = "A" * 1_000_000


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


BAD_CREDENTIALS = (
    "Basic " + b64(b"analyst\x00:" + PASSWORD.encode()), "Basic " + b64(b"analyst:pass\x00word"),
    "Basic " + b64(b"ana\nlyst:" + PASSWORD.encode()), "Basic " + b64(b"\xff\xfe:\xff"),
    "Basic " + b64(b"analyst"), "Basic " + b64(b":"), "Basic " + b64("٣:²".encode()), "Basic !!!notbase64",
    "Basic " + b64(b"analyst:" + PASSWORD.encode())[:-2], "Basic", "Basic a b", "Basic " + b64(b"\x00" * 300),
    "Basic " + b64(b"x" * 200_000 + b":y"), "Bearer", "Bearer a b", "Bearer fsd_\x00\x01", "Bearer fsp_\x00\x7f",
    "Bearer fsd_" + MEGABYTE, "Bearer fsp_" + MEGABYTE, "Bearer " + MEGABYTE, "Bearer fsd_é", "Bearer fsp_\xff",
    "Digest username=\"analyst\"", "\x00", "Basic\x00" + b64(b"analyst:x"), "bEaReR fsd_x", "Token abc",
)
HEADER_SWEEP: dict[str, tuple[str, ...]] = {
    "HTTP_AUTHORIZATION": BAD_CREDENTIALS,
    "HTTP_COOKIE": ('sessionid="aaaaaaaaaaaaaaaa\\000"', "sessionid=" + "a" * 5000, "sessionid=\x00\x01",
                    "csrftoken=\x00; sessionid=", "=;=;;", '"\\', "sessionid=%00%00%00%00%00%00%00%00"),
    "CONTENT_TYPE": ("application/json; charset=utf-16", "multipart/form-data", "multipart/form-data; boundary=",
                     "multipart/form-data; boundary=" + "a" * 5000, "application/x-www-form-urlencoded",
                     "text/plain", "image/png", "application/json; charset=\x00", "application/json; charset=xx",
                     "*/*", "", "\x00", "application/json;;;=", "application/json; charset=\"utf-8"),
    "CONTENT_LENGTH": ("-1", "abc", "²", "٣", "0", "9" * 30, " 2", "1e3", "", "\x00", "+5"),
    "HTTP_X_FORWARDED_FOR": ("\x00", ",", ", , ,", "1.2.3.4, \x00", "x" * 5000, "::::::", "²"),
    "HTTP_HOST": ("\x00", "localhost:²", "localhost:99999999999", "evil.example", "[::1", "localhost\\@x", ""),
    "HTTP_IF_NONE_MATCH": ("*", 'W/"x"', '"' + "a" * 5000, "\x00", ",,,"),
    "HTTP_IF_MODIFIED_SINCE": ("Mon, 01 Jan 0001 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:60 GMT", "²", "9" * 30),
    "HTTP_ACCEPT": ("application/json; q=abc", "text/html", "application/geo+json", "text/csv", "\x00",
                    "*/*; version=\x00", "a" * 5000, "application/json; q=²"),
    "HTTP_ACCEPT_LANGUAGE": ("\x00", "x" * 5000, "*;q=²", "en-GB;q=nan"),
    "HTTP_USER_AGENT": ("\x00", "QGIS\x00\x01", "x" * 100_000),
    "HTTP_ORIGIN": ("\x00", "null", "http://[::1"),
    "HTTP_REFERER": ("\x00", "http://[::1", "https://evil.example/"),
    "HTTP_X_FORWARDED_PROTO": ("\x00", "https, http"),
}


def header_strategy(name: str) -> st.SearchStrategy:
    known = HEADER_SWEEP[name]
    if name == "HTTP_AUTHORIZATION":
        basic_bytes = st.binary(max_size=40).map(lambda raw: "Basic " + b64(raw))
        basic_text = st.tuples(LATIN1, LATIN1).map(
            lambda pair: "Basic " + b64(f"{pair[0]}:{pair[1]}".encode("latin-1")))
        bearer = st.tuples(st.sampled_from(("fsd_", "fsp_", "")), LATIN1).map(lambda pair: "Bearer " + "".join(pair))
        return st.one_of(st.sampled_from(known), basic_bytes, basic_text, bearer, LATIN1)
    return st.one_of(st.sampled_from(known), LATIN1)




@st.composite
def header_sets(draw) -> dict[str, str]:
    names = draw(st.lists(st.sampled_from(sorted(HEADER_SWEEP)), max_size=3, unique=True))
    return {name: draw(header_strategy(name)) for name in names}


# --- operations ----------------------------------------------------------------------------

API, PAGE = "api", "page"


@dataclass
class Operation:
    method: str
    path: str  # with {name} placeholders
    query: list[str] = field(default_factory=list)
    path_params: list[str] = field(default_factory=list)
    enums: dict[str, list[str]] = field(default_factory=dict)
    body: bool = False
    kind: str = API
    role: str | None = None

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


ROLES = (  # who calls what (as in test_openapi_fuzz.CALLERS): a valid caller, so refusals come from parsing
    ("/api/v1/devices/enrol", None), ("/api/v1/devices/", "basic:supervisor_leigh"), ("/api/v1/sync/", "device"),
    ("/api/v1/attachments/", "device"), ("/api/v1/records", "api_token"), ("/api/v1/exports", "api_token"),
    ("/api/v1/aggregates/", "basic:analyst"), ("/api/v1/dpo/", "basic:dpo"),
    ("/api/v1/escalations", "basic:supervisor_leigh"), ("/ogc/", "api_token"),
    ("/review/", "session:supervisor_leigh"), ("/admin/", "session:admin"), ("/warden/", None),
    # The front door's workspaces, each as a role it opens to (front_door/doors.py); / and /login/ anonymous.
    ("/analysis/", "session:analyst"), ("/partner/", "session:partner_fire"), ("/dpo/", "session:dpo"), ("/", None),
)


def role_for(path: str) -> str | None:
    return next(role for prefix, role in ROLES if path.startswith(prefix))


def _openapi_operations(document: dict, prefix: str) -> list[Operation]:
    operations = []
    for path, item in document["paths"].items():
        for method, spec in item.items():
            if method not in ("get", "post", "put", "patch", "delete", "head"):
                continue
            params = [p for p in spec.get("parameters", []) + item.get("parameters", []) if "name" in p]
            full = (prefix + path.lstrip("/")) if prefix else path
            operations.append(Operation(
                method=method.upper(), path=full,
                query=sorted({p["name"] for p in params if p["in"] == "query"}),
                path_params=sorted({p["name"] for p in params if p["in"] == "path"}),
                enums={p["name"]: [str(v) for v in (p.get("schema") or {}).get("enum", [])] for p in params},
                body="requestBody" in spec, role=role_for(full),
            ))
    return operations


def api_operations() -> list[Operation]:
    from drf_spectacular.generators import SchemaGenerator

    from warden_app.analysis.ogc import openapi_document

    return (_openapi_operations(SchemaGenerator().get_schema(request=None, public=True), "")
            + _openapi_operations(openapi_document("http://testserver/ogc/"), "/ogc/"))


# The GET parameters each HTML page reads (its forms' fields), with Django's admin's own.
DESK_QUERY = {
    "/review/": ["state", "type", "area", "author", "date_from", "date_to", "page"],
    "/review/conflicts/": ["show", "page"], "/review/quarantine/": ["show", "page"],
    "/review/login/": ["next"], "/login/": ["next"], "/": ["next"], "/api/schema/": ["format", "lang", "version"],
    # The analyst's map: the records API's filters, its kind of record and page.
    "/analysis/": ["type", "from", "to", "qualifier", "incident_type", "issue_type", "grade", "area", "organisation",
                   "review_state", "polygon", "after"],
    "/analysis/exports/": ["requested"], "/analysis/grants/": ["sent"],
}
# (Django's own "e", "all", "_popup" are read by Django alone.)
ADMIN_QUERY = ["q", "o", "p", "_to_field"]


def _routes(patterns, prefix: str = ""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield "/" + prefix + str(entry.pattern), entry


def _placeholders(route: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def page_operations() -> list[Operation]:
    operations = []
    for route, _ in _routes(get_resolver().url_patterns):
        if not (route in ("/", "/login/") or route.startswith((
                "/review/", "/warden/", "/api/docs/", "/api/redoc/", "/api/schema/", "/healthz", "/readyz",
                "/favicon.ico", "/analysis/", "/partner/", "/dpo/", "/tiles/"))) or route.endswith("/logout/"):
            continue
        path = _placeholders(route)
        operations.append(Operation(
            "GET", path, query=DESK_QUERY.get(path, ["page"]), path_params=re.findall(r"\{(\w+)\}", path),
            kind=PAGE, role=role_for(path)))
    for model, model_admin in admin.site._registry.items():
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        filters = [f"{name}__exact" for name in getattr(model_admin, "list_filter", ()) if isinstance(name, str)]
        operations.append(Operation("GET", base, query=ADMIN_QUERY + filters, kind=PAGE, role="session:admin"))
        operations.append(Operation("GET", base + "{object_id}/change/", query=["_changelist_filters"],
                                    path_params=["object_id"], kind=PAGE, role="session:admin"))
    return operations


OPERATIONS = api_operations() + page_operations()


# --- the world and the request -------------------------------------------------------------


class World:
    def __init__(self):
        from fieldsync.sync.services.devices import device_enrol
        from warden_app.services.api_tokens import api_token_create

        world = build_analysis_world()
        self.users = world.users
        self.device_token = world.handheld("warden_leigh").token
        _, self.api_token = api_token_create(user=self.users["analyst"], name="input fuzz")
        spare = device_enrol(username="warden_leigh", password=PASSWORD, label="spare", platform="test")
        self.known = {
            "record_id": world.records["council_leigh"], "featureId": world.records["council_leigh"],
            "record_type": "observation", "collectionId": "observations", "device_id": str(spare.device.pk),
            "sha256": "0" * 64, "object_id": "1", "export_id": "00000000-0000-0000-0000-000000000000",
            "escalation_id": "00000000-0000-0000-0000-000000000000", "conflict_id": world.records["council_leigh"],
            "item_id": "1", "token_id": "1",
        }

        self.sessions: dict[str, str] = {}  # username -> session cookie, for the current test

    def credentials(self, role: str | None) -> dict[str, str]:
        if role is None:
            return {}
        kind, _, username = role.partition(":")
        if kind == "device":
            return {"HTTP_AUTHORIZATION": f"Bearer {self.device_token}"}
        if kind == "api_token":
            return {"HTTP_AUTHORIZATION": f"Bearer {self.api_token}"}
        if kind == "basic":
            return {"HTTP_AUTHORIZATION": "Basic " + b64(f"{username}:{PASSWORD}".encode())}
        if username not in self.sessions:
            client = Client()
            client.force_login(self.users[username])
            self.sessions[username] = client.cookies[django_settings.SESSION_COOKIE_NAME].value
        return {"HTTP_COOKIE": f"{django_settings.SESSION_COOKIE_NAME}={self.sessions[username]}"}


@dataclass
class Case:
    operation: Operation
    query: dict[str, str] = field(default_factory=dict)
    path_values: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def wsgi_call(environ: dict) -> tuple[int, str, bytes, list[str]]:
    """The application as a WSGI server runs it (fieldsync.wsgi, so a guard in front of
    Django is part of what is tested): the body read whole, the response closed."""
    status, types, errors = [], [], []

    def start_response(line, headers, exc_info=None):
        status.append(int(line.split()[0]))
        types.append(next((value for name, value in headers if name.lower() == "content-type"), ""))

    def record(sender, request=None, **kwargs):
        errors.append(traceback.format_exc())

    got_request_exception.connect(record, weak=False)
    try:
        result = wsgi_application(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
    finally:
        got_request_exception.disconnect(record)
    return status[0], types[0], body, errors


def send(world: World, case: Case) -> int:
    op = case.operation
    path = op.path
    for name in op.path_params:
        value = case.path_values.get(name, world.known.get(name, "x"))
        path = path.replace("{" + name + "}", urllib.parse.quote(value, safe=""))
    body = b"{}" if op.body else b""
    environ = {
        "REQUEST_METHOD": op.method, "SCRIPT_NAME": "",
        # As a server hands the path over: percent-decoded, its bytes as Latin-1.
        "PATH_INFO": urllib.parse.unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": urllib.parse.urlencode(case.query), "SERVER_NAME": "testserver", "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "testserver",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(), "wsgi.multithread": False, "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        **({"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body))} if op.body else {}),
        **world.credentials(op.role),
    }
    environ.update(case.headers)
    status, _content_type, content, errors = wsgi_call(environ)
    if status >= 500 or errors:
        raise AssertionError(f"{describe(case)}\n-> {status} {content[:200]!r}\n{''.join(errors)[-1500:]}")
    # Whatever Accept says (text/html included: no browsable API), an API refusal is JSON.
    if op.kind == API and status >= 400 and op.method != "HEAD" and content:
        try:
            answer = orjson.loads(content)
        except orjson.JSONDecodeError:
            answer = None
        if not (isinstance(answer, dict) and isinstance(answer.get("code"), str)
                and isinstance(answer.get("message"), str) and isinstance(answer.get("fields"), dict)):
            raise AssertionError(f"{describe(case)}\n-> {status}, not the error shape: {content[:300]!r}")
    return status


def describe(case: Case) -> str:
    def short(mapping):
        return {k: (v if len(v) <= 80 else v[:60] + f"...({len(v)} chars)") for k, v in mapping.items()}

    return (f"{case.operation.id} query={short(case.query)!r} path={short(case.path_values)!r} "
            f"headers={short(case.headers)!r}")


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """One committed world for every operation (streams read on a second connection),
    flushed afterwards, as transactional tests leave the database. Each operation's test runs
    in a transaction rolled back at its end, so what one operation's examples change never
    reaches the next."""
    from django.core.management import call_command

    with django_db_blocker.unblock():
        yield World()
        call_command("flush", interactive=False, verbosity=0)


@pytest.fixture
def fuzz_env(world, db, settings, tmp_path, monkeypatch):
    from celery.app.task import Task
    from django.core.cache import cache
    from django.db import close_old_connections


    settings.SYNC_DEVICE_RATE = settings.SYNC_ENROL_RATE = "1000000/min"
    # Bad credentials count as failed sign-ins; the fuzz would lock its own callers out.
    settings.LOGIN_FAILURE_LIMIT = settings.LOGIN_FAILURE_ADDRESS_LIMIT = 10**9
    settings.MEDIA_ROOT = tmp_path
    monkeypatch.setattr(Task, "apply_async", lambda self, *args, **kwargs: None)
    cache.clear()
    world.sessions.clear()  # rolled back with the last test
    # As Django's test client does: the test's transaction is open, and a real server's
    # "close connections that are not in autocommit" would close it under the test.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield world
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _representatives() -> set[str]:
    """The first operation of each (kind, caller, body) group: headers other than the
    credentials are read by the same code (middleware, the WSGI guard, DRF's parsers) across
    a group, so only these get every header's known-bad values (the rest get them in their
    Hypothesis examples), which keeps the run short."""
    seen: dict[tuple, str] = {}
    for op in OPERATIONS:
        seen.setdefault((op.kind, op.role, op.body, op.path.split("/")[1]), op.id)
    return set(seen.values())


REPRESENTATIVES = _representatives()


def sweep(op: Operation) -> list[Case]:
    """Every parameter alone with each value the issue names; every header alone with each
    of its known-bad values (credentials, and a body's headers, on every operation)."""
    cases = [Case(op, query={name: value}) for name in op.query for value in SWEEP_VALUES]
    cases += [Case(op, path_values={name: value}) for name in op.path_params for value in SWEEP_VALUES]
    every = op.id in REPRESENTATIVES
    for name, values in HEADER_SWEEP.items():
        if every or (op.kind == API and name == "HTTP_AUTHORIZATION") or (
                op.body and name in ("CONTENT_TYPE", "CONTENT_LENGTH")):
            cases += [Case(op, headers={name: value}) for value in values]
    return cases


def cases_for(op: Operation) -> st.SearchStrategy:
    choice = {name: st.one_of(VALUES, st.sampled_from(op.enums[name])) if op.enums.get(name) else VALUES
              for name in op.query + op.path_params}
    query = st.lists(st.sampled_from(op.query), max_size=3, unique=True) if op.query else st.just([])
    paths = st.lists(st.sampled_from(op.path_params), max_size=2, unique=True) if op.path_params else st.just([])

    @st.composite
    def build(draw):
        return Case(op, query={n: draw(choice[n]) for n in draw(query)},
                    path_values={n: draw(choice[n]) for n in draw(paths)}, headers=draw(header_sets()))

    return build()


@pytest.mark.parametrize("op", OPERATIONS, ids=[op.id for op in OPERATIONS])
def test_no_input_is_a_server_error(op, fuzz_env):
    for case in sweep(op):
        send(fuzz_env, case)

    @seed(SEED)
    @FUZZ_SETTINGS
    @given(cases_for(op))
    def fuzz(case):
        send(fuzz_env, case)

    fuzz()


def test_every_route_is_fuzzed():
    """A new route is fuzzed without anyone remembering to: it must be an operation of an
    OpenAPI document, a desk, handheld or docs page, or the admin's (sign-in, logout and
    static files are exercised elsewhere)."""
    fuzzed = {re.sub(r"\{\w+\}", "{}", op.path) for op in OPERATIONS}
    missed = []
    for route, _ in _routes(get_resolver().url_patterns):
        if route.startswith("/admin/") or route.endswith("/logout/"):
            continue
        if re.sub(r"\{\w+\}", "{}", _placeholders(route)) not in fuzzed:
            missed.append(route)
    assert not missed, f"routes no fuzz covers: {missed}"
