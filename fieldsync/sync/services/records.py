"""Server-side changes to synced records (review, conflict resolution, rectification,
retention, placement): each one a new version, with its feed rows, in the caller's transaction.

Handhelds learn of these changes through the same feed as of each other's pushes, and a
later push merges against them like against any other device's version.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from django.db import transaction
from django.utils import timezone

from fieldsync import db
from fieldsync.errors import ApiError, field_error

from .. import registry, rows
from ..feed import feed_touch
from ..fields import Context, Invalid
from ..push import wire_data
from ..registry import Row


@dataclass(frozen=True)
class Changed:
    row: Row
    version: int
    changed_fields: list[str]


def record_load(*, type_name: str, record_id, lock: bool = False) -> Row | None:
    rtype = _type(type_name)
    return rows.load_rows(rtype, [record_id], lock=lock).get(record_id)


def record_server_update(
    *,
    type_name: str,
    record_id,
    user,
    changes: dict[str, Any] | None = None,
    server_columns: dict[str, Any] | None = None,
    extra_changed: tuple[str, ...] = (),
    clean: bool = True,
    content_edit: bool = True,
) -> Changed:
    """Apply wire-field `changes` and `server_columns` (e.g. review state) to a record as
    a new version by `user`. Must run inside a transaction (the caller's, with its log
    row). Raises ApiError for unknown records and invalid values.

    `content_edit=False` is for changes that are not edits by the record's makers (the
    DPO's rectification, erasure of personal fields): the policy's `after_edit` is skipped
    (a rejected record stays rejected, out of analysis) and `updated_at`, which the sync
    window counts from, is kept, so a year-old record erased by retention does not come
    back into every handheld's window. Handhelds holding the record still hear of it."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("record_server_update must run inside transaction.atomic()")
    rtype = _type(type_name)
    row = rows.load_rows(rtype, [record_id], lock=True).get(record_id)
    if row is None:
        raise ApiError("not_found", "No such record.", status_code=404)
    old_keys = frozenset(rtype.policy.scope_keys(row))
    fields = rtype.field_map
    patch: dict[str, Any] = {}
    errors: dict[str, list] = {}
    ctx = Context(now=timezone.now(), max_future=timedelta(days=3650),
                  choices=(rtype.policy.form(row.get(rows.FORM_FIELD)) or (0, 0, {}))[2])
    for name, value in (changes or {}).items():
        spec = fields.get(name)
        if spec is None:
            errors[name] = [field_error("unknown_field", f"{name} is not a field of {type_name}")]
            continue
        try:
            cleaned = spec.clean(value, ctx) if clean else value
        except Invalid as exc:
            errors[name] = [field_error(exc.code, exc.message)]
            continue
        if row.get(name) != cleaned:
            patch[name] = cleaned
    if errors:
        raise ApiError("invalid", "Some values are not valid.", fields=errors)
    location = rtype.location_group[0] if rtype.location_group else None
    if location and location in patch:
        patch.update(rtype.policy.placement_columns(rtype.policy.locate([patch[location]])[0]))
    server_changes = {k: v for k, v in (server_columns or {}).items() if row.get(k) != v}
    if not patch and not server_changes and not extra_changed:
        return Changed(row=row, version=row["version"], changed_fields=[])
    now = timezone.now()
    row.update(patch)
    row.update(server_changes)
    if patch and content_edit:
        row.update(rtype.policy.after_edit(row))
    row["version"] += 1
    if content_edit:
        row["updated_at"] = now
    rows.update_rows(rtype, [row])
    changed = sorted([k for k in patch if k in fields] + list(extra_changed))
    versions_record(rtype=rtype, rows=[row], changed=changed, user=user, at=now)
    keys = old_keys | frozenset(rtype.policy.scope_keys(row))
    feed_touch([(type_name, record_id, key) for key in keys], at=now)
    return Changed(row=row, version=row["version"], changed_fields=changed)


def records_server_update(
    *,
    type_name: str,
    updates: Mapping[Any, Mapping[str, Any]],
    changed: list[str],
    user,
    also_notify: Iterable[str] = (),
    content_edit: bool = True,
) -> list[Row]:
    """Set server columns (e.g. the area) of many records at once, each as a new version by
    `user` naming `changed`, with the feed rows of its scope keys before and after and of
    `also_notify` (a scope that no longer exists, such as a deleted area's). `updates` maps
    each record id to its new column values ({} for a new version alone); every record sets
    the same columns. Records gone meanwhile are skipped. Must run inside the caller's
    transaction, with its log row. `content_edit=False` keeps updated_at (see
    record_server_update). Returns the rows as written."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("records_server_update must run inside transaction.atomic()")
    rtype = _type(type_name)
    columns = sorted({column for values in updates.values() for column in values})
    unknown = set(columns) - set(rtype.server_columns)
    if unknown:
        raise ValueError(f"not server columns of {type_name}: {', '.join(sorted(unknown))}")
    if any(len(values) != len(columns) for values in updates.values()):
        raise ValueError("every record must set the same columns")
    found = rows.load_rows(rtype, list(updates), lock=True)
    if not found:
        return []
    now = timezone.now()
    extra = frozenset(also_notify)
    feed = []
    for record_id, row in found.items():
        keys = set(rtype.policy.scope_keys(row))
        row.update(updates[record_id])
        row["version"] += 1
        if content_edit:
            row["updated_at"] = now
        keys |= set(rtype.policy.scope_keys(row)) | extra
        feed += [(type_name, record_id, key) for key in keys]
    written = list(found.values())
    rows.server_columns_update(rtype, written, columns)
    versions_record(rtype=rtype, rows=written, changed=changed, user=user, at=now)
    feed_touch(feed, at=now)
    return written


def versions_record(*, rtype, rows: list[Row], changed: list[str], user, at) -> None:
    """Version rows for server-side changes (no device, no mutation), each row at the
    version it now has, with its snapshot."""
    if not rows:
        return
    with db.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO sync_recordversion (record_type, record_id, version, changed_fields, data, user_id, "
            "device_id, mutation_id, created_at) VALUES (%s, %s, %s, %s, %s::jsonb, %s, NULL, NULL, %s)",
            [(rtype.name, row["id"], row["version"], changed, orjson.dumps(wire_data(rtype, row)).decode(),
              getattr(user, "pk", None), at) for row in rows],
        )


def _type(type_name: str):
    rtype = registry.get(type_name)
    if rtype is None:
        raise ApiError("unknown_type", f"Unknown record type {type_name!r}.")
    return rtype
