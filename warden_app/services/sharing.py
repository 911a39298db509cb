"""Declaring the sharing protocol: its default clauses, and purpose grants to analysts."""
from __future__ import annotations

from datetime import datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from .. import permissions
from ..models import PurposeGrant, SharingRule, User
from ..roles import Role

# The partnership's default clauses (product.md: field staff see personal details only in
# records of their own organisation). Migration 0004 holds the copy every database starts with.
DEFAULT_RULES: tuple[dict, ...] = (
    {
        "key": "field-staff-own-organisation-personal",
        "viewer_scope": SharingRule.Viewer.ANY,
        "viewer_kind": "",
        "viewer_organisation": None,
        "viewer_roles": [Role.WARDEN.value, Role.PCSO.value],
        "owner_scope": SharingRule.Owner.OWN,
        "owner_organisation": None,
        "field_groups": ["personal"],
        "note": "Field staff see personal details only in their own organisation's records.",
    },
)


@transaction.atomic
def sharing_defaults_ensure() -> list[SharingRule]:
    """Create the default clauses, or put them back as declared (idempotent: a rule
    already as declared is not written)."""
    rules = []
    for declared in DEFAULT_RULES:
        values = {k: v for k, v in declared.items() if k != "key"}
        rule, created = SharingRule.objects.get_or_create(key=declared["key"], defaults=values)
        if not created:
            changed = [name for name, value in values.items() if getattr(rule, name) != value]
            if changed:
                for name in changed:
                    setattr(rule, name, values[name])
                rule.save(update_fields=[*changed, "updated_at"])
        rules.append(rule)
    return rules


@transaction.atomic
def purpose_grant_issue(
    *,
    granted_by: User,
    user: User,
    record_type: str,
    fields: list[str],
    purpose: str,
    valid_from: datetime | None = None,
    valid_until: datetime,
) -> PurposeGrant:
    """Open named personal fields of one record type to an analyst for a stated purpose.

    Only admins grant, never to themselves, only to analysts, and only personal fields
    (the others need no grant)."""
    if not permissions.can_manage(granted_by):
        raise PermissionDenied("only an administrator issues purpose grants")
    if not permissions.has_role(user, Role.ANALYST):
        raise ValidationError({"user": "purpose grants are for analysts"})
    personal = permissions.PERSONAL_FIELDS.get(record_type)
    if personal is None:
        raise ValidationError({"record_type": f"unknown record type {record_type!r}"})
    unknown = set(fields) - personal
    if not fields or unknown:
        raise ValidationError({"fields": f"name personal fields of {record_type}: {sorted(personal)}"})
    if not purpose.strip():
        raise ValidationError({"purpose": "state the purpose"})
    grant = PurposeGrant.objects.create(
        user=user, record_type=record_type, fields=sorted(set(fields)), purpose=purpose.strip(),
        valid_from=valid_from or timezone.now(), valid_until=valid_until, granted_by=granted_by,
    )
    permissions.forget_cached_rights(user)
    return grant


@transaction.atomic
def purpose_grant_revoke(*, grant: PurposeGrant, revoked_by: User) -> PurposeGrant:
    if not permissions.can_manage(revoked_by):
        raise PermissionDenied("only an administrator revokes purpose grants")
    if grant.revoked_at is None:
        grant.revoked_at, grant.revoked_by = timezone.now(), revoked_by
        grant.save(update_fields=["revoked_at", "revoked_by"])
    return grant
