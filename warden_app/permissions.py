"""Who may do what: every permission question is a plain function of (user, object).

Views, the sync registration, selectors and the admin only ask these; none decides on
its own. Area rights are guardian grants to team groups (direct foreign-key tables), so
one indexed join answers "which areas" for a user.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from django.db.models import Q

from fieldsync import db

from .rights import forget_rights, rights_of
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


def request_memo(user) -> dict:
    """Answers worked out for this user object: a request loads its user afresh, so they
    live as long as the request (a change of rights is seen by the next one)."""
    cache = getattr(user, "_fieldsync_perm_cache", None)
    if cache is None:
        cache = {}
        user._fieldsync_perm_cache = cache
    return cache




def _active(user) -> bool:
    return user is not None and getattr(user, "is_authenticated", False) and user.is_active


def forget_cached_rights(user) -> None:
    """Drop per-request caches after roles or grants change within one request."""
    forget_rights(user)
    if hasattr(user, "_fieldsync_perm_cache"):
        delattr(user, "_fieldsync_perm_cache")


def area_ids_with(user, codename: str) -> frozenset[int]:
    """Ids of the areas on which the user holds `codename`, directly or through a group."""
    return rights_of(user).areas.get(codename, frozenset())


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
    cache = request_memo(user)
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


def can_read_records(user) -> bool:
    """The records API, exports and the OGC API: analysts (all areas), supervisors (their
    areas) and admins. Field staff use their handhelds; partner viewers get aggregates."""
    return has_role(user, Role.ANALYST, Role.SUPERVISOR, Role.ADMIN)


def record_scope_q(user) -> Q | bool:
    """`can_view_record` as a filter on a record table: True (every record), False (none)
    or a Q. tests/analysis/test_sharing.py holds the two to the same answers."""
    if not _active(user):
        return False
    if has_role(user, Role.ADMIN):
        return True
    q = Q(author_id=user.pk)
    supervised = supervised_user_ids(user)
    if supervised:
        q |= Q(area_id__isnull=True, author_id__in=supervised)
    areas: set[int] = set()
    if has_role(user, Role.SUPERVISOR):
        areas |= area_ids_with(user, REVIEW_AREA)
    if is_field_staff(user):
        areas |= area_ids_with(user, RECORD_IN_AREA)
    if has_role(user, Role.ANALYST):
        if user.has_perm(f"warden_app.{ANALYSE_AREA}"):
            return q | Q(area_id__isnull=False)
        areas |= area_ids_with(user, ANALYSE_AREA)
    if areas:
        q |= Q(area_id__in=sorted(areas))
    return q


# --- personal data: the sharing protocol -------------------------------------------------
#
# Personal fields of a record are open to a user through a relationship to the record
# (author, reviewing supervisor, admin, DPO: decided here, in code) or through the
# partnership's declared protocol (models/sharing.py: SharingRule rows for field staff and
# supervisors, PurposeGrant rows for analysts). Rules only grant; whatever nothing opens
# is redacted. Rules and grants are read in one query per user and request.

def fields_of_group(group: str, record_type: str) -> frozenset[str]:
    """The fields of `record_type` a sharing rule's field group stands for."""
    if group == "personal":
        return PERSONAL_FIELDS.get(record_type, frozenset())
    return frozenset()


@dataclass(frozen=True)
class PurposeBasis:
    grant_id: int
    purpose: str


@dataclass(frozen=True)
class Sharing:
    """What the declared protocol opens to one user.

    rule_owners: field group -> owner organisation ids, or None for every owner.
    grants: record type -> field -> the purpose grants opening it.
    """

    rule_owners: dict[str, frozenset[int] | None] = field(default_factory=dict)
    rule_keys: tuple[str, ...] = ()
    grants: dict[str, dict[str, tuple[PurposeBasis, ...]]] = field(default_factory=dict)

    def granted(self, record_type: str) -> frozenset[str]:
        return frozenset(self.grants.get(record_type, {}))

    def purposes(self, record_type: str, fields: Iterable[str]) -> list[PurposeBasis]:
        by_field = self.grants.get(record_type, {})
        found = {basis for name in fields for basis in by_field.get(name, ())}
        return sorted(found, key=lambda b: b.grant_id)


def sharing_of(user) -> Sharing:
    """The sharing rules and active purpose grants that apply to `user`, read once (one
    query) and kept on the user object for the request, like `area_ids_with`."""
    if not _active(user):
        return Sharing()
    cache = request_memo(user)
    if "sharing" not in cache:
        cache["sharing"] = _load_sharing(user)
    return cache["sharing"]


@cache
def _sharing_sql() -> str:
    from .models import Organisation, PurposeGrant, SharingRule

    viewer = SharingRule.Viewer
    return f"""
SELECT 'rule', r.owner_scope, r.owner_organisation_id, r.field_groups, r.key
FROM {SharingRule._meta.db_table} r
WHERE r.viewer_roles && %(roles)s::varchar[]
  AND (r.viewer_scope = '{viewer.ANY.value}'
       OR (r.viewer_scope = '{viewer.ORGANISATION.value}' AND r.viewer_organisation_id = %(org)s)
       OR (r.viewer_scope = '{viewer.KIND.value}'
           AND r.viewer_kind = (SELECT kind FROM {Organisation._meta.db_table} WHERE id = %(org)s)))
UNION ALL
SELECT 'grant', g.record_type, g.id, g.fields, g.purpose
FROM {PurposeGrant._meta.db_table} g
WHERE %(analyst)s AND g.user_id = %(user)s AND g.revoked_at IS NULL
  AND g.valid_from <= %(now)s AND g.valid_until > %(now)s
"""


def _load_sharing(user) -> Sharing:
    from django.utils import timezone

    from .models.sharing import RULE_ROLES

    roles = roles_of(user)
    rule_roles = sorted(roles & set(RULE_ROLES))
    analyst = Role.ANALYST in roles
    if not rule_roles and not analyst:
        return Sharing()
    # Raw and prepared, on the engine's cursor: every pull page asks this, and building
    # the ORM's union of two filtered querysets cost a tenth of a page of 200 records.
    with db.cursor() as cursor:
        cursor.execute(_sharing_sql(), {"roles": rule_roles, "org": user.organisation_id, "analyst": analyst,
                                        "user": user.pk, "now": timezone.now()})
        found = cursor.fetchall()
    rule_owners: dict[str, set[int] | None] = {}
    rule_keys: list[str] = []
    grants: dict[str, dict[str, list[PurposeBasis]]] = {}
    for src, scope, ref, names, text in found:
        if src == "grant":
            for name in names:
                grants.setdefault(scope, {}).setdefault(name, []).append(PurposeBasis(ref, text))
            continue
        rule_keys.append(text)
        if scope == "own":
            owners = {user.organisation_id} if user.organisation_id is not None else set()
        elif scope == "organisation":
            owners = {ref}
        else:
            owners = None
        for group in names:
            if group in rule_owners and rule_owners[group] is None:
                continue
            rule_owners[group] = None if owners is None else (rule_owners.get(group) or set()) | owners
    return Sharing(
        rule_owners={g: None if o is None else frozenset(o) for g, o in rule_owners.items()},
        rule_keys=tuple(sorted(rule_keys)),
        grants={rt: {f: tuple(b) for f, b in by_field.items()} for rt, by_field in grants.items()},
    )


def personal_fields_for(user, record_type: str, record) -> frozenset[str]:
    """The personal fields of `record` this user may see (asked once the record itself may
    be seen): all of them for its author, its reviewing supervisor, admins and the DPO;
    otherwise those the sharing rules open for its owner organisation and, for analysts,
    those an active purpose grant names."""
    personal = PERSONAL_FIELDS.get(record_type, frozenset())
    if not personal or not _active(user):
        return frozenset()
    # The answer depends on these three columns only; a pull page or an export asks it
    # for thousands of records that share a handful of them.
    key = ("personal", record_type, record.author_id, record.area_id, record.organisation_id)
    cache = request_memo(user)
    if key not in cache:
        cache[key] = _personal_fields_for(user, record_type, record, personal)
    return cache[key]


def _personal_fields_for(user, record_type: str, record, personal: frozenset[str]) -> frozenset[str]:
    if record.author_id == user.pk or has_role(user, Role.ADMIN, Role.DPO) or can_review_record(user, record):
        return personal
    sharing = sharing_of(user)
    opened = set(sharing.granted(record_type))
    for group, owners in sharing.rule_owners.items():
        if owners is None or record.organisation_id in owners:
            opened |= fields_of_group(group, record_type)
    return personal & frozenset(opened)


def personal_fields_q(user, record_type: str) -> dict[str, Q | bool]:
    """`personal_fields_for` as filters, one per personal field: True (open in every
    record), False (in none) or a Q on the record table. Selectors build the redacting SQL
    from it; tests/analysis/test_sharing.py holds both forms to the same answers."""
    personal = PERSONAL_FIELDS.get(record_type, frozenset())
    if not personal or not _active(user):
        return dict.fromkeys(personal, False)
    if has_role(user, Role.ADMIN, Role.DPO):
        return dict.fromkeys(personal, True)
    relational = Q(author_id=user.pk)
    if has_role(user, Role.SUPERVISOR):
        review_areas = area_ids_with(user, REVIEW_AREA)
        if review_areas:
            relational |= Q(area_id__in=sorted(review_areas))
        supervised = supervised_user_ids(user)
        if supervised:
            relational |= Q(area_id__isnull=True, author_id__in=sorted(supervised))
    sharing = sharing_of(user)
    granted = sharing.granted(record_type)
    answer: dict[str, Q | bool] = {}
    for name in personal:
        if name in granted:
            answer[name] = True
            continue
        q, everywhere = relational, False
        for group, owners in sharing.rule_owners.items():
            if name not in fields_of_group(group, record_type):
                continue
            if owners is None:
                everywhere = True
            elif owners:
                q |= Q(organisation_id__in=sorted(owners))
        answer[name] = True if everywhere else q
    return answer


def visible_fields(user, record_type: str, record, all_fields: frozenset[str]) -> frozenset[str]:
    """The fields of `record` this user may see: all but the personal fields that
    `personal_fields_for` does not open (the pull, the API, exports and OGC all ask this
    or its SQL twin `personal_fields_q`)."""
    personal = PERSONAL_FIELDS.get(record_type, frozenset())
    if not personal:
        return all_fields
    return all_fields - (personal - personal_fields_for(user, record_type, record))


def may_see_personal(user, record_type: str, record) -> bool:
    """Whether any personal field of `record` is open to this user."""
    return bool(personal_fields_for(user, record_type, record))


# --- administration and accountability ---------------------------------------------------

def can_manage(user) -> bool:
    """Users, teams, areas, organisations, devices, forms, retention settings."""
    return has_role(user, Role.ADMIN)


def can_read_access_log(user) -> bool:
    """Only the data protection officer: admins see everything but the log."""
    return has_role(user, Role.DPO)
