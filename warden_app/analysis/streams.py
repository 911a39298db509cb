"""Streamed reads: rows straight from PostgreSQL, logged before the first row leaves.

The design (docs/analysis.md, "Streams and the s.62 log"):

1. A dedicated connection opens a REPEATABLE READ, READ ONLY transaction and exports its
   snapshot (`pg_export_snapshot()`).
2. The request's own connection opens a transaction on that same snapshot (`SET
   TRANSACTION SNAPSHOT`), writes the s.62 row naming every id the read will return with
   personal fields open — collected by PostgreSQL with INSERT … SELECT array_agg, so no
   id list is held in Python — and COMMITS it.
3. Only then does the dedicated connection run the read, as `COPY (SELECT …) TO STDOUT`:
   PostgreSQL streams the rows (built by the query: JSON text per Feature, or CSV) while
   the worker passes them on, so the database and the worker work at the same time, and
   the worker holds one chunk (`CHUNK_ROWS` features, or one COPY block) at a time.

Both transactions see the same snapshot, so the logged ids are exactly the ids streamed,
even while records are written meanwhile. The row is committed before any data leaves,
so no crash, timeout or dropped client can leave a disclosure unlogged (a log row written
inside a long streaming transaction would be lost with it). If the stream fails after the
row committed, the log over-states what left, never under-states it.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from ..services.access_log import access_log_records_matching
from .selectors import RecordQuery

CHUNK_ROWS = 2000
_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9A-F]+)?$")


@dataclass
class ReadLog:
    """The s.62 row a read writes if it returns personal fields."""

    action: str
    recipient: str = ""
    purpose: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class RecordStream:
    """`open()` (this writes the log row), then iterate `features()` or `csv_blocks()`
    once, and always `close()`."""

    def __init__(self, query: RecordQuery, *, log: ReadLog | None):
        self.query = query
        self.log = log
        self.log_entry_id: int | None = None
        self.row_count = 0
        self._reader = None

    def open(self) -> RecordStream:
        writer = connections[DEFAULT_DB_ALIAS]
        if writer.in_atomic_block:
            # The log row must commit on its own before the stream starts.
            raise RuntimeError("a record stream cannot be opened inside a transaction")
        reader = connections.create_connection(DEFAULT_DB_ALIAS)
        self._reader = reader
        try:
            reader.ensure_connection()
            raw = reader.connection
            raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = raw.execute("SELECT pg_export_snapshot()").fetchone()[0]
            if self.log is not None and self.query.may_return_personal:
                self.log_entry_id = self._write_log(snapshot)
        except BaseException:
            self.close()
            raise
        return self

    def _write_log(self, snapshot: str) -> int | None:
        if not _SNAPSHOT_ID.match(snapshot):
            raise RuntimeError(f"unexpected snapshot id {snapshot!r}")
        ids = self.query.personal_ids()
        if ids is None:
            return None
        with transaction.atomic(), connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            return access_log_records_matching(
                user=self.query.user, action=self.log.action, record_type=self.query.record_type, ids=ids,
                recipient=self.log.recipient, purpose=self.log.purpose, details=self.log.details,
            )

    def _copy(self, shape: str, options: str):
        if self._reader is None:
            raise RuntimeError("open() the stream first")
        sql, params = self.query.sql(shape=shape, flags=False)
        cursor = self._reader.connection.cursor()  # Django's: parameters bound client-side, as COPY needs
        return cursor, cursor.copy(f"COPY ({sql}) TO STDOUT ({options})", tuple(params))

    def features(self) -> Iterator[list[str]]:
        """GeoJSON Feature texts, `CHUNK_ROWS` at a time."""
        _, copying = self._copy("feature", "FORMAT binary")
        with copying as copy:
            copy.set_types(["text"])
            chunk: list[str] = []
            for (text,) in copy.rows():
                chunk.append(text)
                if len(chunk) == CHUNK_ROWS:
                    self.row_count += len(chunk)
                    yield chunk
                    chunk = []
            if chunk:
                self.row_count += len(chunk)
                yield chunk

    def cells(self, *, srid: int = 4326) -> Iterator[list[tuple]]:
        """Typed rows ("cells" shape: numbers, times and text as Python values, the point
        as x, y in `srid`), `CHUNK_ROWS` at a time: what XLSX and GeoPackage files are
        written from. The binary COPY is parsed by psycopg in C, as for features."""
        if self._reader is None:
            raise RuntimeError("open() the stream first")
        sql, params = self.query.sql(shape="cells", flags=False, srid=srid)
        cursor = self._reader.connection.cursor()
        with cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT binary)", tuple(params)) as copy:
            copy.set_types(self.query.cell_types())
            chunk: list[tuple] = []
            for row in copy.rows():
                chunk.append(row)
                if len(chunk) == CHUNK_ROWS:
                    self.row_count += len(chunk)
                    yield chunk
                    chunk = []
            if chunk:
                self.row_count += len(chunk)
                yield chunk

    def csv_blocks(self) -> Iterator[bytes]:
        """CSV rows (no header) as PostgreSQL writes them, block by block."""
        cursor, copying = self._copy("csv", "FORMAT csv")
        with copying as copy:
            for block in copy:
                yield bytes(block)
        self.row_count = cursor.rowcount

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is None:
            return
        # Closing the connection ends its transaction (read only: nothing to keep) and any
        # COPY still running, whatever state an abandoned stream left it in.
        reader.close()
