"""Erasing personal fields from a record and from every copy the system keeps of them.

Copies: the record's versions (RecordVersion.data), conflicts (Conflict.fields), receipts
(Receipt.result: the record views sent back with conflicts), quarantined mutations
(QuarantinedMutation.payload), photos (Attachment file and thumbnail, when no other record
names them) and export files holding the record's personal data. The change feed holds ids
only. The caller logs the erasure (without the values) in the same transaction.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.files.storage import default_storage
from django.db import transaction

from fieldsync.errors import ApiError, invalid
from fieldsync.sync.api import (
    Attachment,
    Conflict,
    QuarantinedMutation,
    Receipt,
    RecordVersion,
    record_load,
    record_server_update,
    registered_type,
    registered_types,
)

from ... import permissions
from ...models import AccessLogEntry, Export

log = logging.getLogger(__name__)

# Export files are built while an erasure may run: one whose build is under way is
# looked at again this often until it has finished (tasks.export_files_erase_task).
EXPORT_RECHECK_S = 60


@dataclass
class Erased:
    """What one erasure did, as counts: the log row carries these, never values."""

    record_type: str
    record_ids: list
    fields: list[str]
    versions: int = 0
    conflicts: int = 0
    receipts: int = 0
    quarantined: int = 0
    photos: int = 0
    exports: int = 0
    exports_pending: list[str] = field(default_factory=list)
    # Records at least one of whose copies changed.
    copies_of: set = field(default_factory=set)

    def details(self) -> dict[str, Any]:
        return {
            "fields": self.fields,
            "copies": {"versions": self.versions, "conflicts": self.conflicts, "receipts": self.receipts,
                       "quarantined": self.quarantined},
            "photos_deleted": self.photos,
            "exports_deleted": self.exports,
            **({"exports_pending": self.exports_pending} if self.exports_pending else {}),
        }


def blank_values(record_type: str, fields: Iterable[str]) -> dict[str, Any]:
    """The value each personal field takes once erased: empty text or an empty list."""
    specs = registered_type(record_type).field_map
    return {
        name: [] if specs[name].kind in ("json_list", "text_list", "photos") else ""
        for name in fields
    }


def erasable_fields(record_type: str, fields: Iterable[str] | None = None) -> list[str]:
    personal = permissions.PERSONAL_FIELDS.get(record_type, frozenset())
    if not personal:
        raise ApiError("invalid", f"{record_type} records hold no personal fields.")
    chosen = set(personal if fields is None else fields)
    unknown = chosen - personal
    if unknown or not chosen:
        raise invalid("fields", "not_in_choices", f"personal fields of {record_type}: {', '.join(sorted(personal))}",
                      summary=f"Personal fields of {record_type}: {', '.join(sorted(personal))}.")
    return sorted(chosen)


def personal_data_erase(*, record_type: str, record_ids: list, user, fields: Iterable[str] | None = None) -> Erased:
    """Blank `fields` (default: every personal field) of each record, as a new version by
    `user` (None: the system) so handhelds holding it hear of it, and in every copy.
    Runs in the caller's transaction; files are deleted once it commits."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("personal_data_erase must run inside transaction.atomic()")
    names = erasable_fields(record_type, fields)
    blank = blank_values(record_type, names)
    ids = sorted({uuid.UUID(str(i)) for i in record_ids}, key=str)
    result = Erased(record_type=record_type, record_ids=ids, fields=names)
    photos: set[str] = set()
    for record_id in ids:
        row = record_load(type_name=record_type, record_id=record_id, lock=True)
        if row is None:
            raise ApiError("not_found", f"No {record_type} {record_id}.", status_code=404)
        if "photos" in blank:
            photos.update(row.get("photos") or ())
        record_server_update(type_name=record_type, record_id=record_id, user=user, changes=blank,
                             clean=False, content_edit=False)
    _copies_erase(result, blank, photos)
    result.exports, result.exports_pending = _exports_erase(ids)
    return result


def copies_erase(*, record_type: str, record_ids: list, fields: Iterable[str] | None = None) -> Erased:
    """The copies half of `personal_data_erase` alone, for records already blank (copies
    a late push made after their erasure). Same transaction rules."""
    names = erasable_fields(record_type, fields)
    blank = blank_values(record_type, names)
    ids = sorted({uuid.UUID(str(i)) for i in record_ids}, key=str)
    result = Erased(record_type=record_type, record_ids=ids, fields=names)
    photos: set[str] = set()
    _copies_erase(result, blank, photos)
    return result


def _copies_erase(result: Erased, blank: dict[str, Any], photos: set[str]) -> None:
    record_type, ids = result.record_type, result.record_ids
    for attr, erase in (("versions", _versions_erase), ("conflicts", _conflicts_erase),
                        ("receipts", _receipts_erase), ("quarantined", _quarantine_erase)):
        changed = erase(record_type, ids, blank, photos)
        setattr(result, attr, len(changed))
        result.copies_of.update(changed)
    if "photos" in blank:
        result.photos = _photos_erase(photos)


def _blank_data(data: Any, blank: dict[str, Any], photos: set[str]) -> bool:
    """Blank the personal keys of one record's `data` dict in place; True if it changed."""
    if not isinstance(data, dict):
        return False
    changed = False
    for name, empty in blank.items():
        if name in data and data[name] != empty:
            if name == "photos" and isinstance(data[name], list):
                photos.update(p for p in data[name] if isinstance(p, str))
            data[name] = empty
            changed = True
    return changed


def _versions_erase(record_type: str, ids: list, blank: dict, photos: set[str]) -> list:
    changed = []
    versions = RecordVersion.objects.filter(record_type=record_type, record_id__in=ids)
    for version in versions.only("id", "record_id", "data"):
        if _blank_data(version.data, blank, photos):
            changed.append(version)
    RecordVersion.objects.bulk_update(changed, ["data"], batch_size=500)
    return [v.record_id for v in changed]


def _conflicts_erase(record_type: str, ids: list, blank: dict, photos: set[str]) -> list:
    """Both sides of each personal field are blanked (the key stays, so the conflict still
    shows which fields clashed, and resolving it can no longer bring the values back)."""
    changed = []
    conflicts = Conflict.objects.filter(record_type=record_type, record_id__in=ids)
    for conflict in conflicts.only("id", "record_id", "fields"):
        touched = False
        for name, empty in blank.items():
            sides = conflict.fields.get(name) if isinstance(conflict.fields, dict) else None
            if not isinstance(sides, dict):
                continue
            for side in ("device", "server"):
                if side in sides and sides[side] != empty:
                    if name == "photos" and isinstance(sides[side], list):
                        photos.update(p for p in sides[side] if isinstance(p, str))
                    sides[side] = empty
                    touched = True
        if touched:
            changed.append(conflict)
    Conflict.objects.bulk_update(changed, ["fields"], batch_size=500)
    return [c.record_id for c in changed]


def _walk_views(value: Any, blank: dict, photos: set[str]) -> bool:
    """Receipts hold record views (`{"data": {...}}`) under `record`, and again inside
    `original` for duplicates: blank every `data` found."""
    if isinstance(value, dict):
        changed = False
        for key, item in value.items():
            if key == "data" and isinstance(item, dict):
                changed |= _blank_data(item, blank, photos)
            else:
                changed |= _walk_views(item, blank, photos)
        return changed
    if isinstance(value, list):
        return any([_walk_views(item, blank, photos) for item in value])
    return False


def _receipts_erase(record_type: str, ids: list, blank: dict, photos: set[str]) -> list:
    changed = []
    for receipt in Receipt.objects.filter(record_type=record_type, record_id__in=ids).only("id", "record_id", "result"):
        if _walk_views(receipt.result, blank, photos):
            changed.append(receipt)
    Receipt.objects.bulk_update(changed, ["result"], batch_size=500)
    return [r.record_id for r in changed]


def _quarantine_erase(record_type: str, ids: list, blank: dict, photos: set[str]) -> list:
    changed = []
    rows = QuarantinedMutation.objects.filter(record_type=record_type, record_id__in=[str(i) for i in ids])
    for item in rows.only("id", "record_id", "payload"):
        payload = item.payload
        if isinstance(payload, dict) and _blank_data(payload.get("data"), blank, photos):
            changed.append(item)
    QuarantinedMutation.objects.bulk_update(changed, ["payload"], batch_size=500)
    return [uuid.UUID(q.record_id) for q in changed]


def _photos_erase(photos: set[str]) -> int:
    """Delete the photos no record names any more (rows now, files after commit)."""
    if not photos:
        return 0
    still_named: set[str] = set()
    for rtype in registered_types():
        if "photos" in rtype.field_map:
            for names in rtype.model.objects.filter(photos__overlap=sorted(photos)).values_list("photos", flat=True):
                still_named.update(names)
    doomed = list(Attachment.objects.filter(sha256__in=photos - still_named).select_for_update())
    files = [name for a in doomed for name in (a.file.name, a.thumbnail.name) if name]
    Attachment.objects.filter(sha256__in=[a.sha256 for a in doomed]).delete()
    transaction.on_commit(lambda: storage_delete(files))
    return len(doomed)


def storage_delete(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            # The row is gone, so nothing serves the file; it is logged for an operator.
            log.exception("could not delete %s", name)


def _exports_erase(ids: list) -> tuple[int, list[str]]:
    """Export files holding personal data of these records: those ready are deleted (the
    export shows as expired); those still being built are named for a recheck."""
    ready = list(
        Export.objects.select_for_update(of=("self",))  # not the log rows it joins
        .filter(status=Export.Status.READY, access_log_entry__record_ids__overlap=ids)
    )
    files = [export.file_name for export in ready if export.file_name]
    Export.objects.filter(pk__in=[e.pk for e in ready]).update(status=Export.Status.EXPIRED)
    if files:
        transaction.on_commit(lambda: storage_delete(files))
    # A build logs its disclosure (details.export) before reading, and links it to the
    # export only when done.
    building = {str(pk) for pk in Export.objects.filter(status=Export.Status.RUNNING).values_list("pk", flat=True)}
    pending: list[str] = []
    if building:
        named = (
            AccessLogEntry.objects.filter(action="disclosure", record_ids__overlap=ids, details__has_key="export")
            .values_list("details__export", flat=True)
        )
        pending = sorted({str(e) for e in named if str(e) in building})
    return len(ready), pending
