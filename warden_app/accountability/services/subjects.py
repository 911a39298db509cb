"""Data subjects' rights, answered by the DPO: subject access, rectification, restriction
and erasure, each one transaction with its s.62 row (never holding personal values)."""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import transaction

from fieldsync.errors import ApiError, field_error
from fieldsync.sync.api import record_load, record_server_update

from ... import permissions
from ...models import AccessAction, AccessLogEntry, Observation
from ...services.access_log import access_log_records
from ..permissions import can_answer_subject_requests
from ..selectors import SubjectCriteria, subject_records
from .erasure import Erased, personal_data_erase

# Fields the DPO may correct; photos are only ever erased.
RECTIFIABLE = {"observation": frozenset({"description", "persons_involved"})}
RESTRICTABLE = {"observation": Observation}


def purpose_checked(purpose: str, *, name: str = "purpose") -> str:
    """The stated purpose (a request reference, a ground), required unless
    ACCESS_LOG_PURPOSE_REQUIRED is off (DUAA 2025 s.82)."""
    purpose = (purpose or "").strip()
    if settings.ACCESS_LOG_PURPOSE_REQUIRED and not purpose:
        raise ApiError("purpose_required", f"State the {name} (e.g. the request's reference).",
                       fields={name: [field_error("required", f"the {name} is required")]})
    if "\x00" in purpose:  # PostgreSQL text cannot hold NUL: refused, as pushes refuse it
        raise ApiError("invalid", f"The {name} contains a NUL character.",
                       fields={name: [field_error("invalid_character", "contains a NUL character")]})
    return purpose


def _dpo(user) -> None:
    if not can_answer_subject_requests(user):
        raise ApiError("permission_denied", "Only the data protection officer answers subject requests.",
                       status_code=403)


def subject_access_search(
    *, user, criteria: SubjectCriteria, purpose: str, limit: int, after: uuid.UUID | None = None,
    via: str = "dpo.subjects",
) -> tuple[list[dict], bool]:
    """Every record naming the person (a page of them), and the consultation row naming
    the records returned, written in the same transaction as the read. `via` says which
    door asked (the API, the DPO's pages, their export)."""
    _dpo(user)
    purpose = purpose_checked(purpose)
    if not criteria.given():
        raise ApiError("invalid", "Give a name, a description or an age.")
    with transaction.atomic():
        records, more = subject_records(criteria, limit=limit, after=after)
        access_log_records(
            user=user, action=AccessAction.CONSULTATION, record_type="observation",
            record_ids=[r["id"] for r in records], purpose=purpose,
            details={"via": via, "criteria": criteria.given(), "returned": len(records)},
        )
    return records, more


def _locked_row(record_type: str, record_id) -> dict[str, Any]:
    row = record_load(type_name=record_type, record_id=uuid.UUID(str(record_id)), lock=True)
    if row is None:
        raise ApiError("not_found", "No such record.", status_code=404)
    return row


def record_rectify(*, user, record_type: str, record_id, changes: dict[str, Any], justification: str) -> int:
    """Correct personal fields (validated as a push would be), as a new version the
    handhelds holding the record receive. The review state stays: this is not an edit by
    the record's makers. Returns the new version."""
    _dpo(user)
    justification = purpose_checked(justification, name="justification")
    record_id = uuid.UUID(str(record_id))
    allowed = RECTIFIABLE.get(record_type, frozenset())
    unknown = set(changes) - allowed
    if not changes or unknown:
        raise ApiError("invalid", f"Rectify one of: {', '.join(sorted(allowed)) or 'nothing'}.",
                       fields={name: [field_error("not_rectifiable", "not a field that may be rectified")]
                               for name in unknown})
    with transaction.atomic():
        _locked_row(record_type, record_id)
        changed = record_server_update(type_name=record_type, record_id=record_id, user=user, changes=changes,
                                       content_edit=False)
        access_log_records(
            user=user, action=AccessAction.ALTERATION, record_type=record_type, record_ids=[record_id],
            purpose=justification,
            details={"via": "dpo.rectify", "rectified": changed.changed_fields, "version": changed.version},
        )
    return changed.version


def record_restrict(*, user, record_type: str, record_id, restricted: bool, justification: str) -> bool:
    """Restrict processing of a record (or lift it): it stays stored and open to the DPO,
    but analysis, exports and escalation leave it out. Returns whether anything changed."""
    _dpo(user)
    justification = purpose_checked(justification, name="justification")
    record_id = uuid.UUID(str(record_id))
    model = RESTRICTABLE.get(record_type)
    if model is None:
        raise ApiError("invalid", f"{record_type} records cannot be restricted.")
    with transaction.atomic():
        _locked_row(record_type, record_id)
        changed = model.objects.filter(pk=record_id).exclude(processing_restricted=restricted).update(
            processing_restricted=restricted
        )
        if changed:
            access_log_records(
                user=user, action=AccessAction.ALTERATION, record_type=record_type, record_ids=[record_id],
                purpose=justification,
                details={"via": "dpo.restrict", "restriction": "applied" if restricted else "lifted"},
            )
    return bool(changed)


def record_erase(
    *, user, record_type: str, record_id, justification: str, fields: Iterable[str] | None = None
) -> tuple[Erased, AccessLogEntry]:
    """Erase personal fields of one record and of every copy of them; the erasure row
    names the record, the fields and how many copies, never a value."""
    _dpo(user)
    justification = purpose_checked(justification, name="justification")
    if not permissions.PERSONAL_FIELDS.get(record_type):
        raise ApiError("invalid", f"{record_type} records hold no personal fields.")
    with transaction.atomic():
        erased = personal_data_erase(record_type=record_type, record_ids=[record_id], user=user, fields=fields)
        entry = erasure_logged(erased, user=user, purpose=justification, via="dpo.erase")
    return erased, entry


def erasure_logged(erased: Erased, *, user, purpose: str, via: str, extra: dict | None = None) -> AccessLogEntry:
    """The erasure row, and (after commit) a recheck of export files still being built."""
    entry = access_log_records(
        user=user, action=AccessAction.ERASURE, record_type=erased.record_type, record_ids=erased.record_ids,
        purpose=purpose, details={"via": via, **erased.details(), **(extra or {})},
    )
    if erased.exports_pending:
        from ..tasks import export_files_erase_soon

        export_files_erase_soon(export_ids=erased.exports_pending, record_type=erased.record_type,
                                record_ids=[str(i) for i in erased.record_ids])
    return entry
