"""The one set of parsers (fieldsync/parsing.py), and the requests that were 500s before it:
each sends what an attacker would, through the real application, and expects a 4xx in the
protocol's error shape. tests/schema/test_input_fuzz.py fuzzes every operation the same way.
"""
# Digits that only look like ASCII ones are the point of this file.
# ruff: noqa: RUF001
from __future__ import annotations

import base64
import io
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from django.test import Client

from fieldsync import parsing
from fieldsync.errors import ApiError
from tests.analysis.conftest import PASSWORD
from tests.error_shape import assert_error_body


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content[:300]
    return assert_error_body(response.json(), code)


# --- the parsers, value by value ----------------------------------------------------------


@pytest.mark.parametrize("raw", ["²", "٣", "①", "１", "1_000", " 1 2", "0x10", "1e3", "9" * 20, "+-1", "\x00"])
def test_integers_are_ascii_digits_within_bounds(raw):
    with pytest.raises(ApiError) as refused:
        parsing.integer("n", raw)
    assert refused.value.status_code == 400 and "n" in refused.value.fields


def test_integers_read_and_bound():
    assert parsing.integer("n", " 42 ") == 42
    assert parsing.integer("n", None, default=7) == 7
    assert parsing.page_limit("5000", default=10, maximum=100, clamp=True) == 100
    with pytest.raises(ApiError):
        parsing.page_limit("0", default=10, maximum=100)
    with pytest.raises(ApiError):
        parsing.page_limit("101", default=10, maximum=100)


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "1e309", "٣", "1_0", "²"])
def test_numbers_are_finite_ascii_decimals(raw):
    with pytest.raises(ApiError):
        parsing.number("x", raw)


@pytest.mark.parametrize("raw", ["{12345678-1234-5678-1234-567812345678}",
                                 "urn:uuid:12345678-1234-5678-1234-567812345678",
                                 "١٢٣٤٥٦٧٨-1234-5678-1234-567812345678", "12345678-1234-5678-1234-56781234567８"])
def test_uuids_are_ascii_hex(raw):
    with pytest.raises(ApiError):
        parsing.uuid_value("id", raw)


@pytest.mark.parametrize(("raw", "code"), [
    ("0001-01-01T00:00:00+14:00", "out_of_range"),  # before year 1 in UTC
    ("9999-12-31T23:59:59-12:00", "out_of_range"),  # after 9999 in UTC
    ("0000-01-01", "invalid_datetime"), ("10000-01-01", "invalid_datetime"),
    ("2026-06-30T23:59:60Z", "invalid_datetime"),  # a leap second
    ("2026-02-30", "invalid_datetime"), ("２０２６-01-01", "invalid_datetime"),
])
def test_date_times_at_the_edges_of_the_calendar_are_refused(raw, code):
    with pytest.raises(parsing.BadInstant) as refused:
        parsing.instant(raw)
    assert refused.value.code == code


def test_date_times_are_read_in_utc():
    # PostgreSQL refuses +23:59; the instant is kept.
    assert parsing.instant("2026-10-01T00:00:00+23:59") == datetime(2026, 9, 30, 0, 1, tzinfo=UTC)
    with pytest.raises(parsing.BadInstant):
        parsing.instant("9999-12-31", end=True)  # no next day
    with pytest.raises(parsing.BadInstant) as refused:
        parsing.instant("2026-10-01T00:00:00", require_offset=True)
    assert refused.value.code == "missing_offset"


@pytest.mark.parametrize("raw", [b"analyst\x00:x", b"ana\nlyst:x", b"analyst:pass\x00", b"\xff\xfe:x", b"no-colon",
                                 b":x", b"analyst:"])
def test_basic_credentials_refuse_control_characters_non_utf8_and_no_colon(raw):
    with pytest.raises(parsing.CredentialsRefused):
        parsing.basic_credentials(b64(raw).encode())


@pytest.mark.parametrize("raw", [b"!!!", b"YW5h bHlzdA==", b"YW5hbHlzdDp4"[:-1]])
def test_basic_credentials_must_be_strict_base64(raw):
    with pytest.raises(parsing.CredentialsRefused):
        parsing.basic_credentials(raw)


@pytest.mark.parametrize("raw", [b"fsd_\x00", b"fsd_" + b"A" * 1_000_000, "fsp_é".encode("latin-1"), b""])
def test_bearer_tokens_are_short_and_printable(raw):
    with pytest.raises(parsing.CredentialsRefused):
        parsing.bearer_token(raw)


# --- the requests that were 500s ----------------------------------------------------------


@pytest.fixture
def world(db):
    """The demo partnership (every role, password PASSWORD)."""
    from django.core.cache import cache

    from warden_app.services.demo import demo_seed

    cache.clear()  # throttle and sign-in counters of earlier tests live in Redis
    return demo_seed(password=PASSWORD)


@pytest.fixture
def warden(world) -> Client:
    from fieldsync.sync.services.devices import device_enrol

    token = device_enrol(username="warden_leigh", password=PASSWORD, label="t", platform="test").token
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.mark.parametrize("limit", ["²", "٣", "①"])
def test_a_pull_limit_of_unicode_digits_is_400(world, warden, limit):
    body = assert_error(warden.get("/api/v1/sync/pull", {"limit": limit}), 400, "invalid")
    assert "limit" in body["fields"]


def test_a_dpo_actor_of_unicode_digits_is_400_or_no_such_user(world):
    client = Client(HTTP_AUTHORIZATION="Basic " + b64(f"dpo:{PASSWORD}".encode()))
    assert_error(client.get("/api/v1/dpo/access-log", {"actor": "²", "purpose": "audit"}), 400, "invalid")


@pytest.mark.parametrize("credentials", [b"analyst\x00:" + PASSWORD.encode(), b"ana\nlyst:x", b"\xff:\xfe",
                                         b"analyst"])
def test_basic_with_a_nul_newline_non_utf8_or_no_colon_is_401_with_a_challenge(world, credentials):
    # The records API: Basic is its first scheme, so its challenge is what a 401 carries.
    response = Client().get("/api/v1/records/observation", HTTP_AUTHORIZATION="Basic " + b64(credentials))
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Basic")


def test_a_device_token_a_megabyte_long_is_401(world):
    response = Client().get("/api/v1/sync/status", HTTP_AUTHORIZATION="Bearer fsd_" + "A" * 1_000_000)
    assert_error(response, 401, "not_authenticated")


@pytest.mark.parametrize(("username", "password"), [("warden_leigh\x00", PASSWORD), ("warden_leigh", "x\x00"),
                                                  ("warden\nleigh", PASSWORD), ("w" * 151, PASSWORD)])
def test_every_password_check_refuses_control_characters_before_the_database(world, username, password):
    """The sign-in pages, enrolment and Basic all end in authenticate(): a NUL in a username
    was a database error there (PostgreSQL text cannot hold one)."""
    from django.contrib.auth import authenticate

    assert authenticate(None, username=username, password=password) is None


def _wsgi(environ_extra: dict, path: str = "/api/v1/sync/status") -> tuple[str, bytes]:
    from fieldsync.wsgi import application

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "testserver",
               "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "testserver",
               "wsgi.input": io.BytesIO(b""), "wsgi.errors": io.StringIO(), "wsgi.url_scheme": "http",
               "wsgi.version": (1, 0), "wsgi.multithread": False, "wsgi.multiprocess": False,
               "wsgi.run_once": False, **environ_extra}
    status = []
    body = b"".join(application(environ, lambda line, headers, exc_info=None: status.append(line)))
    return status[0], body


@pytest.mark.parametrize("extra", [{"CONTENT_TYPE": "application/json; charset=\x00"},
                                   {"CONTENT_LENGTH": "-1"}, {"CONTENT_LENGTH": "²"},
                                   {"HTTP_X_FORWARDED_FOR": "1.2.3.4\x00"}])
def test_headers_django_would_choke_on_are_400_before_it(db, extra):
    """A NUL in Content-Type's charset failed Django's request object itself (a bare 500)."""
    status, body = _wsgi(extra)
    assert status.startswith("400"), (status, body)
    assert orjson.loads(body)["code"] == "bad_request"


def test_a_nul_in_an_admin_filter_is_400(world):
    status, body = _wsgi({"QUERY_STRING": "kind__exact=%00"}, path="/admin/warden_app/organisation/")
    assert status.startswith("400"), (status, body)


def test_a_session_cookie_with_an_escaped_nul_is_no_session(world):
    """Django's cookie parser unquotes `\\000` to a NUL; the key reached PostgreSQL (500)."""
    response = Client().get("/review/", HTTP_COOKIE='sessionid="aaaaaaaaaaaaaaaa\\000"')
    assert response.status_code == 302  # to the sign-in page, as for anyone without a session


@pytest.mark.django_db
@pytest.mark.parametrize(("sent", "stored"), [
    (datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=16))), "0001-12-31 08:00:00+00 BC"),
    (datetime(1, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=23, minutes=59))), "0001-12-31 05:31:00+00 BC"),
    (datetime(9999, 12, 31, 23, 0, tzinfo=timezone(-timedelta(hours=20))), "10000-01-01 19:00:00+00"),
    (datetime(2026, 10, 1, 0, 0, tzinfo=timezone(timedelta(hours=23, minutes=59))), "2026-09-30 00:01:00+00"),
])
def test_an_instant_beyond_pythons_calendar_in_utc_reaches_postgresql_as_the_same_instant(sent, stored):
    """What reaches a query unparsed (an admin date filter) at the calendar's edges with an
    offset PostgreSQL refuses: the same instant, not an OverflowError (a 500)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL timezone = 'UTC'")
        cursor.execute("SELECT %s::timestamptz::text", [sent])
        assert cursor.fetchone()[0] == stored


@pytest.mark.django_db
def test_a_push_names_records_and_mutations_by_ascii_uuids_only(world):
    """Arabic-Indic digits make a UUID to Python's uuid.UUID; to the protocol they are no id."""
    import uuid

    from fieldsync.sync.services.devices import device_enrol
    from tests.sync.conftest import Handheld, mutation, observation_data

    enrolment = device_enrol(username="warden_leigh", password=PASSWORD, label="t", platform="t")
    handheld = Handheld(token=enrolment.token, device_id=str(enrolment.device.pk))
    arabic = "".join(chr(0x0660 + int(c)) if c.isdigit() else c for c in "12345678-1234-1234-1234-123456789012")
    assert str(uuid.UUID(arabic)) == "12345678-1234-1234-1234-123456789012"
    result = handheld.push_one({**mutation("observation", "create", arabic, observation_data()),
                                "mutation_id": arabic})
    assert result["status"] == "rejected" and set(result["errors"]) == {"id", "mutation_id"}
    assert {e[0]["code"] for e in result["errors"].values()} == {"invalid_uuid"}
