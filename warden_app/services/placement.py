"""Re-placing records when operational boundaries change.

A record's area is derived from its location when the location is written; when an area
is drawn again, imported again or removed, the records it covered (or now covers) are
placed again here, each as a new version, so handhelds following the old area are told to
evict and those following the new one receive it.
"""
from __future__ import annotations

from django.db import transaction

from fieldsync import db
from fieldsync.sync.api import records_server_update, registered_type

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
            rtype = registered_type(type_name)
            held[type_name] = list(rtype.model.objects.filter(area_id=area_id).values_list("id", flat=True))
        area.delete()  # records' area_id becomes NULL (on_delete=SET_NULL)
        for type_name, ids in held.items():
            if not ids:
                continue
            # The area is gone from the rows already, so its scope key is named here: the
            # handhelds that followed it are the ones to tell.
            records_server_update(type_name=type_name, updates={record_id: {} for record_id in ids},
                                  changed=["area"], user=by, also_notify=[f"a:{area_id}"])
            access_log_records(user=by, action="alteration", record_type=type_name, record_ids=ids,
                               details={"reason": "area deleted", "area": area_id})
    return records_replace(by=by) + sum(len(ids) for ids in held.values())


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
    total = 0
    for type_name in PLACED_TYPES:
        rtype = registered_type(type_name)
        with db.cursor() as cursor:
            cursor.execute(_MISPLACED_SQL.format(table=rtype.table), [batch])
            found = cursor.fetchall()
        if not found:
            continue
        ids = [record_id for record_id, _, _ in found]
        records_server_update(type_name=type_name, updates={record_id: {"area_id": new_area}
                                                            for record_id, _old_area, new_area in found},
                              changed=["area"], user=by)
        access_log_records(user=by, action="alteration", record_type=type_name, record_ids=ids,
                           details={"reason": "area boundaries changed"})
        total += len(found)
    return total
