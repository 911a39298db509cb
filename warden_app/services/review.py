"""Review decisions and the resolution of sync conflicts and quarantine.

Each is one transaction: the decision, the record's new version (so the author's handheld
hears of it on its next pull) and the access-log row.
"""
from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from fieldsync.errors import ApiError, field_error, invalid
from fieldsync.sync.api import Conflict, QuarantinedMutation, record_load, record_server_update

from .. import permissions
from ..choices import ReviewState
from ..models import Review
from .access_log import access_log_records

REVIEWABLE = {"observation": "observation_id", "street_audit": "street_audit_id"}
DECISIONS = {ReviewState.APPROVED.value, ReviewState.REJECTED.value, ReviewState.HAS_ISSUES.value, "comment"}
# Where a decision may be taken from; approved and rejected records only take comments.
OPEN_STATES = {ReviewState.SUBMITTED.value, ReviewState.EDITED.value, ReviewState.HAS_ISSUES.value}


class _Row:
    def __init__(self, row: dict):
        self.author_id = row["author_id"]
        self.area_id = row.get("area_id")
        self.organisation_id = row.get("organisation_id")
        self.review_state = row.get("review_state")


def review_decide(*, reviewer, record_type: str, record_id, decision: str, note: str = "",
                  expected_version: int | None = None) -> Review:
    """Approve, reject, return with issues (the note reaches the author's handheld) or
    comment on a submitted record. With `expected_version` (the version the reviewer
    read), a record changed since is refused, so nobody approves what they have not seen."""
    if record_type not in REVIEWABLE:
        raise ApiError("invalid", "Only observations and street audits are reviewed.")
    if decision not in DECISIONS:
        raise invalid("decision", "not_in_choices", f"one of {', '.join(sorted(DECISIONS))}",
                      summary=f"Unknown decision {decision!r}.")
    note = (note or "").strip()
    if decision in (ReviewState.HAS_ISSUES.value, ReviewState.REJECTED.value) and not note:
        raise invalid("note", "required", "say what the issue is", summary="Say what the issue is.")
    with transaction.atomic():
        row = record_load(type_name=record_type, record_id=record_id, lock=True)
        if row is None or row.get("deleted_at"):
            raise ApiError("not_found", "No such record.", status_code=404)
        if not permissions.can_review_record(reviewer, _Row(row)):
            raise ApiError("permission_denied", "You may not review this record.", status_code=403)
        if expected_version is not None and row["version"] != expected_version:
            raise ApiError("version_changed", f"The record changed since version {expected_version}; "
                           "read it again before deciding.", status_code=409)
        if decision != "comment" and row["review_state"] not in OPEN_STATES:
            raise ApiError("invalid_state", f"A record that is {row['review_state']} takes comments only.",
                           status_code=409)
        changed = record_server_update(
            type_name=record_type, record_id=record_id, user=reviewer,
            server_columns={} if decision == "comment" else {"review_state": decision},
            extra_changed=("review",),
        )
        review = Review.objects.create(
            **{REVIEWABLE[record_type]: record_id}, record_version=changed.version, decision=decision,
            note=note, reviewer=reviewer,
        )
        access_log_records(user=reviewer, action="alteration", record_type=record_type, record_ids=[record_id],
                           details={"review": decision})
    return review


def conflict_resolve(*, user, conflict_id, choices: dict[str, str], note: str = "") -> Conflict:
    """Resolve a conflict field by field: `choices[field]` is "device" (take the handheld's
    value) or "server" (keep the current value). Fields not named keep the server value."""
    with transaction.atomic():
        conflict = Conflict.objects.select_for_update().filter(pk=conflict_id).first()
        if conflict is None:
            raise ApiError("not_found", "No such conflict.", status_code=404)
        row = record_load(type_name=conflict.record_type, record_id=conflict.record_id, lock=True)
        if row is None:
            raise ApiError("not_found", "The record no longer exists.", status_code=404)
        if not (permissions.can_review_record(user, _Row(row)) or permissions.can_manage(user)):
            raise ApiError("permission_denied", "You may not resolve this conflict.", status_code=403)
        if conflict.resolved_at is not None:
            raise ApiError("already_resolved", "This conflict is already resolved.", status_code=409)
        unknown = set(choices) - set(conflict.fields)
        bad = {k: v for k, v in choices.items() if v not in ("device", "server")}
        if unknown or bad:
            raise ApiError("invalid", "Choose device or server for fields of this conflict.",
                           fields={k: [field_error("not_in_choices", "device or server, for a field of this conflict")]
                                   for k in unknown | set(bad)})
        taken: dict[str, Any] = {
            name: conflict.fields[name]["device"] for name, side in choices.items()
            if side == "device" and name != "_deleted"
        }
        server_columns = {}
        if choices.get("_deleted") == "device":
            server_columns["deleted_at"] = timezone.now()
        changed = record_server_update(
            type_name=conflict.record_type, record_id=conflict.record_id, user=user, changes=taken,
            server_columns=server_columns, extra_changed=("_deleted",) if server_columns else (),
        )
        conflict.resolved_at = timezone.now()
        conflict.resolved_by = user
        conflict.resolution = {"choices": choices, "note": note, "version": changed.version}
        conflict.save(update_fields=["resolved_at", "resolved_by", "resolution"])
        access_log_records(user=user, action="alteration", record_type=conflict.record_type,
                           record_ids=[conflict.record_id], details={"conflict": str(conflict.pk)})
    return conflict


def quarantine_resolve(*, user, item_id: int, note: str) -> QuarantinedMutation:
    """Close a quarantined mutation after a supervisor has dealt with it (re-keyed it,
    told the author…). The mutation itself stays as it arrived."""
    with transaction.atomic():
        item = QuarantinedMutation.objects.select_for_update().select_related("user").filter(pk=item_id).first()
        if item is None:
            raise ApiError("not_found", "No such quarantined mutation.", status_code=404)
        if not (item.user_id in permissions.supervised_user_ids(user) or permissions.can_manage(user)):
            raise ApiError("permission_denied", "You may not resolve this item.", status_code=403)
        if not note.strip():
            raise invalid("note", "required", "say how it was resolved", summary="Say how it was resolved.")
        item.resolved_at = timezone.now()
        item.resolved_by = user
        item.resolution_note = note.strip()
        item.save(update_fields=["resolved_at", "resolved_by", "resolution_note"])
    return item
