"""Declaring the sharing protocol: its default clauses, and purpose grants to analysts."""
from __future__ import annotations

from datetime import datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from .. import permissions
from ..models import FieldGroup, PurposeGrant, SharingRule, User
from ..models.sharing import RULE_ROLES
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


def purpose_grant_problems(
    *, granted_by: User, user: User | None, record_type: str, fields: list[str], purpose: str,
    valid_from: datetime, valid_until: datetime | None,
) -> dict[str, str]:
    """Why a grant may not be issued, per field, in words for whoever fills the form (the
    admin's form shows these; purpose_grant_issue refuses on any)."""
    problems: dict[str, str] = {}
    if user is None:
        problems["user"] = "Choose the analyst the fields are opened to."
    elif not permissions.has_role(user, Role.ANALYST):
        problems["user"] = "Purpose grants are for analysts."
    elif user.pk == granted_by.pk:
        problems["user"] = "Nobody opens personal data to themselves."
    personal = permissions.PERSONAL_FIELDS.get(record_type)
    if personal is None:
        problems["record_type"] = f"Unknown record type {record_type!r}."
    elif not personal:
        problems["record_type"] = "This kind of record has no personal fields to open."
    else:
        unknown = set(fields) - personal
        if not fields or unknown:
            problems["fields"] = f"Name personal fields of this kind of record: {', '.join(sorted(personal))}."
    if not (purpose or "").strip():
        problems["purpose"] = "State the purpose the fields are opened for."
    if valid_until is None:
        problems["valid_until"] = "Say when the grant ends."
    elif valid_until <= valid_from:
        problems["valid_until"] = "The grant must end after it starts."
    return problems


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
    valid_from = valid_from or timezone.now()
    problems = purpose_grant_problems(granted_by=granted_by, user=user, record_type=record_type, fields=fields,
                                      purpose=purpose, valid_from=valid_from, valid_until=valid_until)
    if problems:
        raise ValidationError(problems)
    grant = PurposeGrant.objects.create(
        user=user, record_type=record_type, fields=sorted(set(fields)), purpose=purpose.strip(),
        valid_from=valid_from, valid_until=valid_until, granted_by=granted_by,
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


# --- clauses changed by an administrator ------------------------------------------------

DEFAULT_KEYS = frozenset(declared["key"] for declared in DEFAULT_RULES)


def sharing_rule_problems(rule: SharingRule) -> dict[str, str]:
    """What makes a clause unfit to save, in words an administrator can act on (the table's
    CHECK constraints say the same, but only by constraint name)."""
    problems: dict[str, str] = {}
    Viewer, Owner = SharingRule.Viewer, SharingRule.Owner
    if rule.viewer_scope == Viewer.KIND and not rule.viewer_kind:
        problems["viewer_kind"] = "Choose the kind of organisation whose staff see the fields."
    if rule.viewer_scope == Viewer.ORGANISATION and rule.viewer_organisation_id is None:
        problems["viewer_organisation"] = "Choose the organisation whose staff see the fields."
    if rule.owner_scope == Owner.ORGANISATION and rule.owner_organisation_id is None:
        problems["owner_organisation"] = "Choose the organisation whose records are shared."
    roles = set(rule.viewer_roles or ())
    if not roles or roles - set(RULE_ROLES):
        problems["viewer_roles"] = "Choose at least one of: warden, PCSO, supervisor."
    if set(rule.field_groups or ()) - set(FieldGroup.values):
        problems["field_groups"] = "Unknown field group."
    return problems


def _normalised(rule: SharingRule) -> None:
    """Drop what the chosen scopes do not use, so the row always satisfies the table's
    constraints (a kind left over from an earlier choice must not linger unseen)."""
    if rule.viewer_scope != SharingRule.Viewer.KIND:
        rule.viewer_kind = ""
    if rule.viewer_scope != SharingRule.Viewer.ORGANISATION:
        rule.viewer_organisation = None
    if rule.owner_scope != SharingRule.Owner.ORGANISATION:
        rule.owner_organisation = None
    rule.viewer_roles = sorted(set(rule.viewer_roles or ()))
    rule.field_groups = sorted(set(rule.field_groups or ()))


@transaction.atomic
def sharing_rule_save(*, rule: SharingRule, by: User) -> SharingRule:
    """Add or change a clause of the protocol. It applies from the next request of every
    user: rules are read once per request (permissions.sharing_of), never kept longer."""
    if not permissions.can_manage(by):
        raise PermissionDenied("only an administrator changes the sharing protocol")
    _normalised(rule)
    problems = sharing_rule_problems(rule)
    if problems:
        raise ValidationError(problems)
    rule.full_clean()
    rule.save()
    # The administrator's own answers of this request were worked out under the old rules.
    permissions.forget_cached_rights(by)
    return rule


@transaction.atomic
def sharing_rule_delete(*, rule: SharingRule, by: User) -> None:
    """Withdraw a clause. The protocol's default clauses stay (seeding would put them back
    unseen): change what they open instead."""
    if not permissions.can_manage(by):
        raise PermissionDenied("only an administrator changes the sharing protocol")
    if rule.key in DEFAULT_KEYS:
        raise ValidationError({"key": "a default clause of the protocol cannot be deleted"})
    rule.delete()
    permissions.forget_cached_rights(by)
