"""Raw psycopg cursors for set-based statements (the sync engine's and the domain's).

Django's psycopg backend binds parameters client-side (it quotes every value into the
SQL text in Python); for a push's column arrays of 500 values that quoting costs more
than the statement. These cursors share Django's connection and transaction but let
PostgreSQL bind the parameters, and read values with psycopg's compiled loaders.
"""
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
from django.db import connection
from psycopg import pq
from psycopg.types.datetime import DatetimeDumper
from psycopg.types.json import JsonbLoader, JsonLoader

_TIMESTAMPTZ = psycopg.postgres.types["timestamptz"].oid


class _OrjsonLoader(JsonLoader):
    def load(self, data):
        return orjson.loads(data)


class _OrjsonbLoader(JsonbLoader):
    def load(self, data):
        return orjson.loads(data)


def uuid_array(ids) -> str:
    """Ids as one `uuid[]` literal (bind it as `%s::uuid[]`): one text value for PostgreSQL
    to parse, where a Python list is dumped element by element."""
    return "{" + ",".join(map(str, ids)) + "}"


def text_array(values) -> str:
    """Texts as one `text[]` literal, every element quoted (so any text is safe): COPY
    takes it as the column's text, where psycopg would dump a Python list element by
    element, checking each against a regular expression (a push of 500 writes 1,500)."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def cursor() -> psycopg.Cursor:
    connection.ensure_connection()
    cur = psycopg.Cursor(connection.connection)
    # Django makes its connection load json as text (JSONField decodes it); raw
    # statements want values, so this cursor loads them itself.
    cur.adapters.register_loader("jsonb", _OrjsonbLoader)
    cur.adapters.register_loader("json", _OrjsonLoader)
    # Django swaps in a pure-Python timestamptz loader (it re-stamps the zone); a pull of
    # 1,000 records reads 4,000 timestamps, so these cursors take psycopg's compiled one.
    # The session's TimeZone is UTC (Django sets it), so values arrive aware, in UTC.
    cur.adapters.register_loader("timestamptz", psycopg.adapters.get_loader(_TIMESTAMPTZ, pq.Format.TEXT))
    return cur


def copy_in(statement: str, prepared: list) -> None:
    """Rows (each a sequence of column values, built beforehand) sent by `COPY ... FROM
    STDIN`: the one way of writing many new rows."""
    if not prepared:
        return
    with cursor() as cur, cur.copy(statement) as copy:
        for values in prepared:
            copy.write_row(values)


@contextmanager
def pipeline() -> Iterator[None]:
    """Statements executed inside are sent at once and not waited for: Python goes on with
    other work while PostgreSQL runs them, in order. A fetch inside waits for that
    statement's result; a database error comes up at the next execute or fetch after it
    arrives, or when the block ends, whichever statement it belongs to, so nothing inside
    may catch database errors. No COPY inside (pipeline mode refuses it). Only inside a
    transaction: outside one, each sync would end an implicit transaction and with it any
    lock taken inside."""
    if not connection.in_atomic_block:
        raise RuntimeError("db.pipeline() must run inside transaction.atomic()")
    connection.ensure_connection()
    with connection.connection.pipeline():
        yield


class _UtcDatetimeDumper(DatetimeDumper):
    """Aware date-times are sent as they are, except those whose offset PostgreSQL refuses
    (beyond ±15:59, which ISO 8601 and Python allow to ±23:59): those are sent as the same
    instant in UTC. The parsers normalise what they read (fieldsync/parsing.py); this covers
    what reaches a query without them, such as the admin's date filters."""

    def get_key(self, obj: datetime, format):
        offset = obj.utcoffset()
        if offset is not None and abs(offset) > _PG_MAX_OFFSET:
            return (self.cls, "utc")
        return super().get_key(obj, format)

    def upgrade(self, obj: datetime, format):
        offset = obj.utcoffset()
        if offset is not None and abs(offset) > _PG_MAX_OFFSET:
            return _InUtcDumper(self.cls)
        return super().upgrade(obj, format)


class _InUtcDumper(DatetimeDumper):
    def dump(self, obj: datetime):
        try:
            return super().dump(obj.astimezone(UTC))
        except OverflowError:
            # 1 January of year 1 east of +15:59 is 31 December 1 BC in UTC, 31 December 9999
            # west of -15:59 is year 10000: instants PostgreSQL holds and Python's datetime
            # cannot, so they are written out by hand.
            shifted = datetime.combine(_NOON_BASE.date(), obj.time()) - obj.utcoffset()
            clock = shifted.strftime("%H:%M:%S.%f")
            if shifted.date() < _NOON_BASE.date():
                return f"0001-12-31 {clock}+00 BC".encode()
            return f"10000-01-01 {clock}+00".encode()


_NOON_BASE = datetime(2000, 1, 1)  # any ordinary day: only the shift across midnight matters


_PG_MAX_OFFSET = timedelta(hours=15, minutes=59)


def utc_datetime_dumper_register() -> None:
    """Called once at start-up (SyncConfig.ready), before the first connection copies
    psycopg's adapters."""
    psycopg.adapters.register_dumper(datetime, _UtcDatetimeDumper)
