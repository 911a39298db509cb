"""The one set of parsers for everything a client sends outside a JSON body: query and path
parameters, credentials and headers. Each reads text into a Python value or refuses it with
the protocol's error (ApiError, naming the parameter in `fields`), so bad input is a 4xx and
never reaches a query, a conversion that overflows or the database.

Decisions made once, here:

- Numbers are ASCII only. `str.isdigit()` is true for '²', '٣' and '①'; `int()` fails on the
  first and reads the second as 3, and `float()` and `uuid.UUID()` take non-ASCII digits too.
  A parameter is what a client typed in ASCII, or it is refused.
- Integers are bounded (a 64-bit column is the widest anything goes into), so a value of
  5,000 digits is refused before `int()` spends time on it.
- Date-times: ISO 8601 / RFC 3339, ASCII only, converted to UTC. PostgreSQL refuses offsets
  beyond ±15:59 that Python accepts, and year 1 east of Greenwich (or 9999 west of it) has
  no UTC instant Python can hold: both are refused or normalised here, not in the database.
  Leap seconds (:60) are refused: neither Python nor PostgreSQL keeps them.
- Credentials carry no control characters (a NUL cannot reach a PostgreSQL text parameter,
  a newline would forge log lines) and have bounded length; HTTP Basic is strict base64 of
  UTF-8 `user:password`.

fieldsync cannot import warden_app, so the module lives here and warden_app uses it.
"""
from __future__ import annotations

import base64
import binascii
import math
import re
import unicodedata
import uuid
from collections.abc import Collection
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import parse_qsl

from django.utils import timezone as django_timezone
from django.utils.dateparse import parse_date, parse_datetime
from rest_framework import exceptions, status

from fieldsync.errors import ApiError, field_error, invalid

# The widest integer column is bigint.
INT_MAX = 2**63 - 1
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
TRUE, FALSE = frozenset({"1", "true", "yes"}), frozenset({"0", "false", "no"})
# Credentials: Django's username column is 150 characters; no password or token needs more
# than this (and hashing a megabyte on every request is work an attacker chooses).
MAX_USERNAME_CHARS = 150
MAX_PASSWORD_CHARS = 1024
MAX_TOKEN_CHARS = 256
_TOKEN = re.compile(r"[A-Za-z0-9_\-.~+/=]+")  # RFC 6750 b64token


def _text(raw: Any) -> str | None:
    if raw is None:
        return None
    text = str(raw).strip(" \t")
    return text or None


# --- numbers --------------------------------------------------------------------------------


def integer(name: str, raw: Any, *, minimum: int = -INT_MAX, maximum: int = INT_MAX,
            default: int | None = None) -> int | None:
    """A whole number in ASCII digits, within [minimum, maximum]; `default` when absent."""
    text = _text(raw)
    if text is None:
        return default
    if not _INTEGER.fullmatch(text):
        raise invalid(name, "not_an_integer", "a whole number in ASCII digits")
    value = int(text)
    if not minimum <= value <= maximum:
        raise invalid(name, "out_of_range", f"{minimum} to {maximum}")
    return value


def page_limit(raw: Any, *, default: int, maximum: int, name: str = "limit", clamp: bool = False) -> int:
    """A page size from 1 to `maximum`; with `clamp` a larger one is served as `maximum`
    (OGC API - Features asks for that) rather than refused."""
    value = integer(name, raw, minimum=1, maximum=INT_MAX if clamp else maximum, default=default)
    assert value is not None
    return min(value, maximum)


def number(name: str, raw: Any, *, minimum: float = -math.inf, maximum: float = math.inf,
           default: float | None = None) -> float | None:
    """A finite decimal number in ASCII (no NaN, no infinities, no '1_000')."""
    text = _text(raw)
    if text is None:
        return default
    value = float(text) if _NUMBER.fullmatch(text) else math.nan
    if not math.isfinite(value):
        raise invalid(name, "not_a_number", "a finite decimal number")
    if not minimum <= value <= maximum:
        raise invalid(name, "out_of_range", f"{minimum:g} to {maximum:g}")
    return value


def boolean(name: str, raw: Any, *, default: bool = False) -> bool:
    text = _text(raw)
    if text is None:
        return default
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise invalid(name, "not_a_boolean", "true or false")


def choice(name: str, raw: Any, allowed: Collection[str], *, default: str | None = None) -> str | None:
    text = _text(raw)
    if text is None:
        return default
    if text not in allowed:
        raise invalid(name, "not_in_choices", f"one of {', '.join(sorted(allowed))}")
    return text


def as_uuid(text: str) -> uuid.UUID | None:
    """`text` as a UUID of 32 ASCII hex digits (hyphens optional), else None: for the sync
    engine's hot path, whose answers name the field themselves."""
    return uuid.UUID(text) if _UUID.fullmatch(text) else None


def uuid_value(name: str, raw: Any) -> uuid.UUID | None:
    """A UUID as 32 ASCII hex digits, hyphenated or not (uuid.UUID alone would take '{…}',
    'urn:uuid:…' and Arabic-Indic digits)."""
    text = _text(raw)
    if text is None:
        return None
    value = as_uuid(text)
    if value is None:
        raise invalid(name, "invalid_uuid", "not a UUID")
    return value


def bbox(name: str, raw: Any) -> tuple[float, float, float, float] | None:
    """`minlon,minlat,maxlon,maxlat` in WGS84 (6 numbers = 3D, heights ignored)."""
    text = _text(raw)
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) not in (4, 6):
        raise invalid(name, "invalid_bbox", "four numbers: minlon,minlat,maxlon,maxlat")
    values = [number(name, part) for part in parts]
    if any(v is None for v in values):
        raise invalid(name, "invalid_bbox", "four numbers: minlon,minlat,maxlon,maxlat")
    if len(values) == 6:
        values = [values[0], values[1], values[3], values[4]]
    minx, miny, maxx, maxy = values
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise invalid(name, "out_of_range", "longitudes within ±180, latitudes within ±90, min before max")
    if minx > maxx:
        raise invalid(name, "out_of_range", "boxes across the antimeridian are not supported")
    return minx, miny, maxx, maxy


# --- dates and times ------------------------------------------------------------------------


class BadInstant(ValueError):
    """A date-time that is not one, or has no instant both Python and PostgreSQL can hold;
    `code` says which (invalid_datetime, missing_offset, out_of_range)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def to_utc(value: datetime) -> datetime:
    """An aware date-time as the same instant in UTC, or BadInstant(out_of_range)."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise BadInstant("out_of_range", "outside the years 1 to 9999 in UTC") from None


def instant(text: Any, *, require_offset: bool = False, end: bool = False) -> datetime:
    """An ISO 8601 date-time (or a plain date: its start, with `end` the next day's start) as
    an aware UTC datetime. Without an offset a time is read in the partnership's zone, unless
    `require_offset` (handhelds must say which instant they mean). Raises BadInstant."""
    if not isinstance(text, str):
        raise BadInstant("wrong_type", "an ISO 8601 string")
    text = text.strip()
    if not text.isascii() or not 8 <= len(text) <= 40:
        raise BadInstant("invalid_datetime", "an ISO 8601 date or date-time")
    try:
        day = None if require_offset else parse_date(text)  # a plain date: parse_datetime takes it as midnight
        value = None if day else parse_datetime(text)
    except ValueError:  # the right shape, an impossible value (2026-02-30, 25:00, :60)
        day = value = None
    if day is not None:
        try:
            value = datetime.combine(day, time.min) + (timedelta(days=1) if end else timedelta(0))
        except OverflowError:  # the day after 9999-12-31
            raise BadInstant("out_of_range", "outside the years 1 to 9999 in UTC") from None
    if value is None:
        raise BadInstant("invalid_datetime", "an ISO 8601 date or date-time")
    if value.tzinfo is None:
        if require_offset:
            raise BadInstant("missing_offset", "must carry a UTC offset")
        value = django_timezone.make_aware(value)
    return to_utc(value)


def is_date(text: Any) -> bool:
    """Whether `text` is a plain ISO date, no time: `instant` reads it as a whole day."""
    if not isinstance(text, str) or not text.strip().isascii():
        return False
    try:
        return parse_date(text.strip()) is not None
    except ValueError:  # the right shape, an impossible day (2026-02-30)
        return False


def stored_instant(text: Any) -> datetime | None:
    """`instant` for a time the server wrote itself (an API's own JSON, a stored run's
    `finished_at`), to show it: None when absent or unreadable, never an error."""
    try:
        return instant(text, require_offset=True) if text else None
    except BadInstant:
        return None


def when(name: str, raw: Any, *, end: bool = False) -> datetime | None:
    """A query parameter's date or date-time (see `instant`), refused with the protocol's 400."""
    text = _text(raw)
    if text is None:
        return None
    try:
        return instant(text, end=end)
    except BadInstant as exc:
        raise invalid(name, exc.code, exc.message) from None


def day(name: str, raw: Any) -> date | None:
    """A plain ISO date (YYYY-MM-DD, ASCII)."""
    text = _text(raw)
    if text is None:
        return None
    try:
        value = parse_date(text) if text.isascii() and len(text) == 10 else None
    except ValueError:
        value = None
    if value is None:
        raise invalid(name, "invalid_date", "an ISO 8601 date (YYYY-MM-DD)")
    return value


# --- credentials and headers ----------------------------------------------------------------


class CredentialsRefused(ApiError, exceptions.AuthenticationFailed):
    """401 not_authenticated in the protocol's shape. An AuthenticationFailed too, so DRF
    adds the view's WWW-Authenticate challenge (QGIS and GDAL ask for a password on it)."""

    def __init__(self, message: str):
        super().__init__("not_authenticated", message, status_code=status.HTTP_401_UNAUTHORIZED)


def has_control(text: str) -> bool:
    """Any control character (C0, DEL, C1) or a line/paragraph separator."""
    return any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)


def credential_ok(text: Any, *, max_chars: int) -> bool:
    """A username or password that can be looked up and logged as it is."""
    return isinstance(text, str) and 0 < len(text) <= max_chars and not has_control(text)


def authorization(request) -> tuple[str, bytes] | None:
    """`Authorization` as (scheme in lower case, the rest), or None when absent. The header
    arrives as Latin-1 text (WSGI); its bytes are what the client sent."""
    raw = request.META.get("HTTP_AUTHORIZATION", "")
    if not raw:
        return None
    data = raw.encode("latin-1", "replace") if isinstance(raw, str) else bytes(raw)
    scheme, _, rest = data.strip().partition(b" ")
    return scheme.decode("latin-1").lower(), rest.strip()


def basic_credentials(value: bytes) -> tuple[str, str]:
    """The (username, password) of HTTP Basic: strict base64 of UTF-8 `user:password`,
    without control characters. Raises CredentialsRefused."""
    if not value or b" " in value or len(value) > 4 * (MAX_USERNAME_CHARS + MAX_PASSWORD_CHARS):
        raise CredentialsRefused("Malformed Basic credentials.")
    try:
        text = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise CredentialsRefused("Basic credentials must be base64 of UTF-8 username:password.") from None
    username, colon, password = text.partition(":")
    if not colon or not credential_ok(username, max_chars=MAX_USERNAME_CHARS) or not credential_ok(
            password, max_chars=MAX_PASSWORD_CHARS):
        raise CredentialsRefused("Malformed Basic credentials.")
    return username, password


def bearer_token(value: bytes) -> str:
    """A bearer token (RFC 6750 characters, at most MAX_TOKEN_CHARS). Raises CredentialsRefused."""
    if not value or len(value) > MAX_TOKEN_CHARS:
        raise CredentialsRefused("Malformed bearer token.")
    token = value.decode("latin-1")
    if not _TOKEN.fullmatch(token):
        raise CredentialsRefused("Malformed bearer token.")
    return token


# Header values as RFC 9110 allows them: no control character but horizontal tab.
_BAD_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def request_problem(environ: dict) -> ApiError | None:
    """Why a request cannot be served at all (None if it can), checked on the WSGI environ
    before Django reads it (fieldsync/wsgi.py), since Django itself fails on some of it:

    - a control character in a header value (a NUL in Content-Type's charset fails Django's
      request object), or a Content-Length that is not ASCII digits;
    - a NUL in the path or in a query parameter: PostgreSQL text cannot hold one, and every
      page (the admin's filters, the desk's, the API's) would pass it on to a query."""
    problem_text = _header_problem(environ)
    if problem_text:
        return ApiError("bad_request", problem_text)
    if "\x00" in environ.get("PATH_INFO", ""):
        return ApiError("bad_request", "The path cannot contain NUL characters.")
    query = environ.get("QUERY_STRING", "")
    if "%00" in query or "\x00" in query:
        bad = sorted({key for key, value in parse_qsl(query, keep_blank_values=True, errors="replace")
                      if "\x00" in key or "\x00" in value})
        if bad:
            return ApiError("invalid", "Query parameters cannot contain NUL characters.",
                            fields={key: [field_error("invalid_character", "contains NUL")] for key in bad})
    return None


def _header_problem(environ: dict) -> str | None:
    for key, value in environ.items():
        if (key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH")) and isinstance(value, str) \
                and _BAD_HEADER_VALUE.search(value):
            return f"The {key.removeprefix('HTTP_').replace('_', '-').title()} header contains a control character."
    length = environ.get("CONTENT_LENGTH") or ""
    if length and not (length.isascii() and length.isdigit() and len(length) <= 18):
        return "Content-Length must be a whole number of bytes."
    return None

