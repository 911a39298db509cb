"""Purpose-grant requests: an analyst asks, an administrator decides.

Approving goes through `purpose_grant_issue` (the one code path that opens personal fields to
an analyst), with the decider as `granted_by`, in the same transaction as the decision: the
request row is the record of who asked, for what, who decided and when, and it can never
say "approved" without the grant it made (a CHECK keeps them together)."""
from __future__ import annotations

from datetime import datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from .. import permissions
from ..models import PurposeGrantRequest, User
from ..roles import Role
from .sharing import purpose_grant_issue

PURPOSE_MAX_CHARS = 2000


@transaction.atomic
def purpose_request_make(
    *, user: User, record_type: str, fields: list[str], purpose: str, valid_from: datetime | None,
    valid_until: datetime,
) -> PurposeGrantRequest:
    if not permissions.has_role(user, Role.ANALYST):
        raise PermissionDenied("only analysts ask for purpose grants")
    personal = permissions.PERSONAL_FIELDS.get(record_type)
    if personal is None:
        raise ValidationError({"record_type": "choose a kind of record"})
    if not fields or set(fields) - personal:
        raise ValidationError({"fields": "choose at least one personal field of that kind of record"})
    purpose = purpose.strip()
    if not purpose:
        raise ValidationError({"purpose": "say what the fields are needed for"})
    if len(purpose) > PURPOSE_MAX_CHARS:
        raise ValidationError({"purpose": f"at most {PURPOSE_MAX_CHARS} characters"})
    start = valid_from or timezone.now()
    if valid_until <= start:
        raise ValidationError({"valid_until": "the end must come after the start"})
    return PurposeGrantRequest.objects.create(
        requested_by=user, record_type=record_type, fields=sorted(set(fields)), purpose=purpose,
        valid_from=start, valid_until=valid_until,
    )


def _decidable(request: PurposeGrantRequest, decider: User) -> PurposeGrantRequest:
    if not permissions.can_manage(decider):
        raise PermissionDenied("only an administrator decides purpose-grant requests")
    locked = PurposeGrantRequest.objects.select_for_update().select_related("requested_by").get(pk=request.pk)
    if locked.requested_by_id == decider.pk:
        raise PermissionDenied("nobody decides their own request")
    if locked.state != PurposeGrantRequest.State.PENDING:
        raise ValidationError({"state": "this request has been decided already"})
    return locked


@transaction.atomic
def purpose_request_approve(*, request: PurposeGrantRequest, decided_by: User) -> PurposeGrantRequest:
    locked = _decidable(request, decided_by)
    now = timezone.now()
    if locked.valid_until <= now:
        raise ValidationError({"valid_until": "the period asked for has ended: the analyst should ask again"})
    grant = purpose_grant_issue(
        granted_by=decided_by, user=locked.requested_by, record_type=locked.record_type, fields=list(locked.fields),
        purpose=locked.purpose, valid_from=max(locked.valid_from, now), valid_until=locked.valid_until,
    )
    locked.state, locked.decided_by, locked.decided_at, locked.grant = (
        PurposeGrantRequest.State.APPROVED, decided_by, now, grant)
    locked.save(update_fields=["state", "decided_by", "decided_at", "grant"])
    return locked


@transaction.atomic
def purpose_request_refuse(*, request: PurposeGrantRequest, decided_by: User, reason: str) -> PurposeGrantRequest:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "say why the request is refused"})
    locked = _decidable(request, decided_by)
    locked.state, locked.decided_by, locked.decided_at, locked.reason = (
        PurposeGrantRequest.State.REFUSED, decided_by, timezone.now(), reason)
    locked.save(update_fields=["state", "decided_by", "decided_at", "reason"])
    return locked
