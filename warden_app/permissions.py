"""Who may do what: every permission question is a plain function of (user, object).

Views, the sync registration, selectors and the admin only ask these; none decides on
its own. Area rights are guardian grants to team groups (direct foreign-key tables), so
one indexed join answers "which areas" for a user.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Q

from .roles import DEVICE_ROLES, FIELD_ROLES, Role, roles_of

if TYPE_CHECKING:
    from .models import Area

RECORD_IN_AREA = "record_in_area"
REVIEW_AREA = "review_area"
ANALYSE_AREA = "analyse_area"

# Fields holding personal data, per record type (product.md "Personal data").
PERSONAL_FIELDS: dict[str, frozenset[str]] = {
    "observation": frozenset({"description", "persons_involved", "photos"}),
    "street_audit": frozenset(),
    "audit_item": frozenset(),
}


def _cache(user) -> dict:
    cache = getattr(user, "_fieldsync_perm_cache", None)
    if cache is None:
        cache = {}
        user._fieldsync_perm_cache = cache
    return cache


def forget_cached_rights(user) -> None:
    """Drop per-request caches after roles or grants change within one request."""
    for attr in ("_fieldsync_perm_cache", "_fieldsync_roles"):
        if hasattr(user, attr):
            delattr(user, attr)


def area_ids_with(user, codename: str) -> frozenset[int]:
    """Ids of the areas on which the user holds `codename`, directly or through a group."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    cache = _cache(user)
    key = f"areas:{codename}"
    if key not in cache:
        from .models import AreaGroupObjectPermission, AreaUserObjectPermission

        via_groups = AreaGroupObjectPermission.objects.filter(
            permission__codename=codename, group__user=user
        ).values_list("content_object_id", flat=True)
        direct = AreaUserObjectPermission.objects.filter(
            permission__codename=codename, user=user
        ).values_list("content_object_id", flat=True)
        cache[key] = frozenset(via_groups) | frozenset(direct)
    return cache[key]


def _area_id(area: Area | int | None) -> int | None:
    if area is None:
        return None
    return area if isinstance(area, int) else area.pk


def has_role(user, *roles: Role) -> bool:
    return bool(roles_of(user) & set(roles))


def is_field_staff(user) -> bool:
    return bool(roles_of(user) & FIELD_ROLES)


def supervised_user_ids(user) -> frozenset[int]:
    """Field staff of the teams this user supervises (for out-of-area records)."""
    if not has_role(user, Role.SUPERVISOR):
        return frozenset()
    cache = _cache(user)
    if "supervised" not in cache:
        from .models import Team, User

        teams = Team.objects.filter(supervisor_group__user=user)
        cache["supervised"] = frozenset(
            User.objects.filter(
                Q(groups__team_as_field__in=teams) | Q(groups__team_as_supervisors__in=teams)
            ).values_list("id", flat=True)
        )
    return cache["supervised"]


# --- devices ---------------------------------------------------------------------------

def can_enrol_device(user) -> bool:
    """Field roles and supervisors enrol handhelds; analysts and others may not."""
    return bool(roles_of(user) & DEVICE_ROLES)


def can_revoke_device(user, device) -> bool:
    """Admins revoke any device; supervisors those of the staff they supervise."""
    if has_role(user, Role.ADMIN):
        return True
    return device.user_id in supervised_user_ids(user) or (
        has_role(user, Role.SUPERVISOR) and device.user_id == user.pk
    )


# --- recording and review --------------------------------------------------------------

def can_record_in(user, area: Area | int | None) -> bool:
    """Field staff (and supervisors, who also walk their areas) record in their areas;
    a fix outside every area is still recorded and kept (product.md)."""
    if not (is_field_staff(user) or has_role(user, Role.SUPERVISOR)):
        return False
    area_id = _area_id(area)
    if area_id is None:
        return True
    return area_id in area_ids_with(user, RECORD_IN_AREA) or area_id in area_ids_with(
        user, REVIEW_AREA
    )


def can_review(user, area: Area | int | None) -> bool:
    """Supervisors review the areas they supervise. Records outside every area are asked
    through `can_review_record`, which knows their author."""
    if not has_role(user, Role.SUPERVISOR):
        return False
    area_id = _area_id(area)
    return area_id is not None and area_id in area_ids_with(user, REVIEW_AREA)


def can_review_record(user, record) -> bool:
    if record.author_id == user.pk:
        return False  # nobody approves their own work
    if record.area_id is None:
        return record.author_id in supervised_user_ids(user)
    return can_review(user, record.area_id)


def can_analyse(user, area: Area | int | None = None) -> bool:
    """Analysts work across all areas (a model-level grant) or those granted to them."""
    if not has_role(user, Role.ANALYST):
        return False
    if user.has_perm(f"warden_app.{ANALYSE_AREA}"):
        return True
    area_id = _area_id(area)
    return area_id is not None and area_id in area_ids_with(user, ANALYSE_AREA)


def can_view_aggregates(user) -> bool:
    """Counts with suppression and hotspot classes: analysts, partners, supervisors, admin."""
    return has_role(user, Role.ANALYST, Role.PARTNER_VIEWER, Role.SUPERVISOR, Role.ADMIN)


def can_view_record(user, record) -> bool:
    """Record-level reads (API, review desk, pull scope). Partner viewers never see records."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if record.author_id == user.pk:
        return True
    if has_role(user, Role.ADMIN):
        return True
    if record.area_id is None:
        return record.author_id in supervised_user_ids(user)
    if can_review(user, record.area_id):
        return True
    if is_field_staff(user) and record.area_id in area_ids_with(user, RECORD_IN_AREA):
        return True
    return can_analyse(user, record.area_id)


def can_edit_record(user, record) -> bool:
    """Authors edit their own records; supervisors correct records they review.
    Approval does not forbid the attempt: the sync engine turns it into a conflict."""
    if record.author_id == user.pk:
        return is_field_staff(user) or has_role(user, Role.SUPERVISOR)
    return can_review_record(user, record)


def visible_fields(user, record_type: str, record, all_fields: frozenset[str]) -> frozenset[str]:
    """The fields of `record` this user may see; personal fields only where allowed.

    Field staff see personal details only in records of their own organisation;
    supervisors in the areas they review; analysts only under a purpose-bound grant.
    """
    personal = PERSONAL_FIELDS.get(record_type, frozenset())
    if not personal or may_see_personal(user, record_type, record):
        return all_fields
    return all_fields - personal


def may_see_personal(user, record_type: str, record) -> bool:
    if record.author_id == user.pk or has_role(user, Role.ADMIN, Role.DPO):
        return True
    if can_review_record(user, record):
        return True
    if is_field_staff(user):
        return record.organisation_id == user.organisation_id
    return False


# --- administration and accountability ---------------------------------------------------

def can_manage(user) -> bool:
    """Users, teams, areas, organisations, devices, forms, retention settings."""
    return has_role(user, Role.ADMIN)


def can_read_access_log(user) -> bool:
    """Only the data protection officer: admins see everything but the log."""
    return has_role(user, Role.DPO)
