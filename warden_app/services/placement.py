"""Re-placing records when operational boundaries change.

A record's area is derived from its location when the location is written; when an area
is drawn again, imported again or removed, the records it covered (or now covers) are
placed again here, each as a new version, so handhelds following the old area are told to
evict and those following the new one receive it.
"""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from fieldsync import db
from fieldsync.sync import registry
from fieldsync.sync.feed import feed_touch
from fieldsync.sync.rows import load_rows
from fieldsync.sync.services.records import versions_record

from .access_log import access_log_records

PLACED_TYPES = ("observation", "street_audit", "audit_item")

# Rows whose stored area differs from the one their location gives today.
_MISPLACED_SQL = """
SELECT id, area_id, warden_area_for_point(location) AS now_area FROM {table}
WHERE area_id IS DISTINCT FROM warden_area_for_point(location)
ORDER BY id LIMIT %s FOR UPDATE
"""


def area_delete(*, area, by=None) -> int:
    """Delete an operational area: its records lose the area (or fall to another that
    covers them) and every handheld that followed it is told."""
    area_id = area.pk
    with transaction.atomic():
        held = {}
        for type_name in PLACED_TYPES:
            rtype = registry.get(type_name)
            held[type_name] = list(rtype.model.objects.filter(area_id=area_id).values_list("id", flat=True))
        area.delete()  # records' area_id becomes NULL (on_delete=SET_NULL)
        now = timezone.now()
        for type_name, ids in held.items():
            if not ids:
                continue
            rtype = registry.get(type_name)
            rows = load_rows(rtype, ids, lock=True)
            feed = []
            for record_id, row in rows.items():
                feed += [(type_name, record_id, key) for key in {f"a:{area_id}", *rtype.policy.scope_keys(row)}]
            _bump(rtype, list(rows.values()), by=by, at=now)
            feed_touch(feed, at=now)
            access_log_records(user=by, action="alteration", record_type=type_name, record_ids=ids,
                               details={"reason": "area deleted", "area": area_id})
    return records_replace(by=by) + sum(len(ids) for ids in held.values())


def _bump(rtype, rows: list[dict], *, by, at) -> None:
    """A new version for each row whose server-derived area changed."""
    if not rows:
        return
    with db.cursor() as cursor:
        cursor.execute(
            f"UPDATE {rtype.table} SET version = version + 1, updated_at = %s WHERE id = ANY(%s::uuid[])",
            [at, [row["id"] for row in rows]],
        )
    for row in rows:
        row["version"] += 1
    versions_record(rtype=rtype, rows=rows, changed=["area"], user=by, at=at)


def records_replace(*, by=None, batch: int = 2000) -> int:
    """Place again every record whose area is stale; returns how many moved. Runs in
    batches of `batch` records, one transaction each, until none is left."""
    moved = 0
    while True:
        with transaction.atomic():
            count = _replace_batch(by=by, batch=batch)
        moved += count
        if count < batch:
            return moved


def _replace_batch(*, by, batch: int) -> int:
    now = timezone.now()
    total = 0
    for type_name in PLACED_TYPES:
        rtype = registry.get(type_name)
        with db.cursor() as cursor:
            cursor.execute(_MISPLACED_SQL.format(table=rtype.table), [batch])
            found = cursor.fetchall()
        if not found:
            continue
        ids = [record_id for record_id, _, _ in found]
        rows = load_rows(rtype, ids)
        feed = []
        for record_id, _old_area, new_area in found:
            row = rows[record_id]
            old_keys = set(rtype.policy.scope_keys(row))
            row["area_id"] = new_area
            row["version"] += 1
            row["updated_at"] = now
            keys = old_keys | set(rtype.policy.scope_keys(row))
            feed += [(type_name, record_id, key) for key in keys]
        with db.cursor() as cursor:
            cursor.execute(
                f"UPDATE {rtype.table} AS t SET area_id = v.area, version = t.version + 1, updated_at = %s "
                "FROM unnest(%s::uuid[], %s::bigint[]) AS v(id, area) WHERE t.id = v.id",
                [now, ids, [new_area for _, _, new_area in found]],
            )
        versions_record(rtype=rtype, rows=list(rows.values()), changed=["area"], user=by, at=now)
        feed_touch(feed, at=now)
        access_log_records(user=by, action="alteration", record_type=type_name, record_ids=ids,
                           details={"reason": "area boundaries changed"})
        total += len(found)
    return total
