"""Writing the change feed: one row per record and scope key, bumped on every change.

Each touched row takes the writing transaction's id (`xid`) and a fresh sequence number,
so pulls can order changes and stop below the oldest transaction still running.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from fieldsync import db

_TOUCH_SQL = """
INSERT INTO sync_change (record_type, record_id, scope_key, xid, seq, changed_at)
SELECT v.t, v.id, v.k, pg_current_xact_id()::text::bigint, nextval('sync_change_seq'), %s
FROM unnest(%s::text[], %s::uuid[], %s::text[]) AS v(t, id, k)
ON CONFLICT (record_type, record_id, scope_key)
DO UPDATE SET xid = EXCLUDED.xid, seq = EXCLUDED.seq, changed_at = EXCLUDED.changed_at
"""


# Rows of records created in this very transaction: there is nothing to update, and a
# plain insert costs a third less than the upsert. Should a row exist after all (a create
# racing another's create of the same id), the unique violation makes the push retry.
_NEW_SQL = _TOUCH_SQL[: _TOUCH_SQL.index("ON CONFLICT")]


def _arrays(entries: Iterable[tuple[str, object, str]]) -> list[str] | None:
    """Distinct (record type, record id, scope key) entries as the three array literals the
    statements take, sorted: parent types first, as registered, then by id and key, so
    concurrent writers lock feed rows in one order and cannot deadlock, and a page lists an
    audit before its items. None when there are none."""
    from . import registry

    rank = {rtype.name: i for i, rtype in enumerate(registry.all_types())}
    # A UUID's bytes sort as the UUID does, compared in C rather than by UUID.__lt__ (a
    # Python call per comparison: half the cost of sorting a push's thousand rows).
    unique = sorted(set(entries), key=lambda e: (rank.get(e[0], 99), getattr(e[1], "bytes", e[1]), e[2]))
    if not unique:
        return None
    types, ids, keys = zip(*unique, strict=True)
    return [db.text_array(types), db.uuid_array(ids), db.text_array(keys)]


def feed_touch(entries: Iterable[tuple[str, object, str]], *, at: datetime, created: bool = False) -> None:
    """Record that each (record type, record id, scope key) changed in this transaction;
    `created` says every record named was created in it."""
    arrays = _arrays(entries)
    if arrays is None:
        return
    with db.cursor() as cursor:
        cursor.execute(_NEW_SQL if created else _TOUCH_SQL, [at, *arrays])


_DROP_SQL = """
DELETE FROM sync_change c USING unnest(%s::text[], %s::uuid[], %s::text[]) AS v(t, id, k)
WHERE c.record_type = v.t AND c.record_id = v.id AND c.scope_key = v.k
"""


def feed_drop(entries: Iterable[tuple[str, object, str]]) -> None:
    """Take back rows this transaction wrote ahead (push: the feed of creates is sent
    before they are decided) that the decision did not keep, e.g. a rejected create's.
    No other transaction has seen them, so nothing is lost to a reader."""
    arrays = _arrays(entries)
    if arrays is None:
        return
    with db.cursor() as cursor:
        cursor.execute(_DROP_SQL, arrays)
