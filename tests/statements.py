"""Counting the statements a piece of code sends, through Django's cursors and the sync
engine's own (fieldsync.db.cursor, which Django's query capture does not see)."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from fieldsync import db


class Watched:
    """An engine cursor that shows each statement's text, parameters and options to
    `hook(cursor, text, params, options)` before running it."""

    def __init__(self, cursor, hook):
        self._cursor = cursor
        self._hook = hook

    def __enter__(self):
        self._cursor.__enter__()
        return self

    def __exit__(self, *exc):
        return self._cursor.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._cursor, name)

    def execute(self, sql, params=None, **options):
        self._hook(self._cursor, sql if isinstance(sql, str) else sql.as_string(self._cursor), params, options)
        return self._cursor.execute(sql, params, **options)


class Statements:
    def __init__(self):
        self.engine: list[str] = []
        self.orm = CaptureQueriesContext(connection)

    @property
    def all(self) -> list[str]:
        return [q["sql"] for q in self.orm.captured_queries] + self.engine

    def __len__(self) -> int:
        return len(self.all)


@contextmanager
def statements_sent():
    """Every statement sent inside the block: `len(seen)`, `seen.all` for their text."""
    seen = Statements()
    real = db.cursor
    with pytest.MonkeyPatch.context() as mp, seen.orm:
        mp.setattr(db, "cursor", lambda: Watched(real(), lambda _c, text, _p, _o: seen.engine.append(text)))
        yield seen
