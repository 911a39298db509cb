"""Writing the s.62 access log, always inside the transaction of the act it records."""
from __future__ import annotations

from collections.abc import Sequence

import orjson
from django.db import connection
from django.db.models import QuerySet

from fieldsync import db

from ..models import AccessLogEntry

# The columns every raw INSERT below fills, in this order (the ORM path fills the same).
_COLUMNS = "at, actor_id, action, record_type, record_ids, device_id, recipient, purpose, details"


def access_log_records(
    *,
    user,
    action: str,
    record_type: str,
    record_ids: Sequence,
    device_id=None,
    recipient: str = "",
    purpose: str = "",
    details: dict | None = None,
) -> AccessLogEntry:
    """One row naming every record the act touched (a push logs one row per action)."""
    return AccessLogEntry.objects.create(
        actor=user if getattr(user, "pk", None) else None,
        action=action,
        record_type=record_type,
        record_ids=list(record_ids),
        device_id=device_id,
        recipient=recipient,
        purpose=purpose,
        details=details or {},
    )


def access_log_synced(
    *, user, action: str, record_type: str, record_ids: Sequence, device_id=None, purpose: str = ""
) -> int:
    """`access_log_records` for the sync engine's hooks: a push or a pull page names up to a
    thousand records, and the ORM would convert and quote each id in Python first. Runs on
    the engine's cursor (the primary, in the push's or pull's transaction); returns the id."""
    with db.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {AccessLogEntry._meta.db_table} ({_COLUMNS}) "
            "VALUES (now(), %s, %s, %s, %s::uuid[], %s, '', %s, '{}') RETURNING id",
            [getattr(user, "pk", None), action, record_type, db.uuid_array(record_ids), device_id, purpose],
        )
        return cursor.fetchone()[0]


def access_log_records_matching(
    *,
    user,
    action: str,
    record_type: str,
    ids: QuerySet,
    recipient: str = "",
    purpose: str = "",
    details: dict | None = None,
) -> int | None:
    """One row naming every id the queryset `ids` (`values_list("id", flat=True)`) returns.

    PostgreSQL collects the ids itself (INSERT … SELECT array_agg), so a read of a million
    records never holds their ids in Python. Writes nothing when `ids` returns none; returns
    the new row's id. Runs in the caller's transaction, so it sees that transaction's
    snapshot: the exact rows the read it records returns under the same snapshot.
    """
    sql, params = ids.query.sql_with_params()
    table = AccessLogEntry._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({_COLUMNS}) SELECT now(), %s, %s, %s, a.ids, NULL, %s, %s, %s::jsonb "
            f"FROM (SELECT array_agg(s.id) AS ids FROM ({sql}) s) a WHERE a.ids IS NOT NULL RETURNING id",
            [getattr(user, "pk", None), action, record_type, recipient[:200], purpose,
             orjson.dumps(details or {}).decode(), *params],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def access_log_repeat(
    *, entry_id: int, user, action: str, recipient: str = "", purpose: str = "", details: dict | None = None
) -> int:
    """A new row naming the same records as row `entry_id` (e.g. each download of an export
    file whose building was logged), copied by PostgreSQL."""
    table = AccessLogEntry._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({_COLUMNS}) SELECT now(), %s, %s, record_type, record_ids, NULL, %s, %s, %s::jsonb "
            f"FROM {table} WHERE id = %s RETURNING id",
            [getattr(user, "pk", None), action, recipient[:200], purpose, orjson.dumps(details or {}).decode(),
             entry_id],
        )
        return cursor.fetchone()[0]
