"""Roles are Django groups with these names; a user's roles are the groups they belong to."""
from enum import StrEnum


class Role(StrEnum):
    WARDEN = "warden"
    PCSO = "pcso"
    SUPERVISOR = "supervisor"
    ANALYST = "analyst"
    PARTNER_VIEWER = "partner_viewer"
    ADMIN = "admin"
    DPO = "dpo"


FIELD_ROLES = frozenset({Role.WARDEN, Role.PCSO})
# Who may enrol a handheld (sync protocol section 2).
DEVICE_ROLES = FIELD_ROLES | {Role.SUPERVISOR}


def roles_of(user) -> frozenset[str]:
    """The role names of a user, cached on the instance for the request's lifetime."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    cached = getattr(user, "_fieldsync_roles", None)
    if cached is None:
        names = set(user.groups.filter(name__in=[r.value for r in Role]).values_list("name", flat=True))
        cached = frozenset(names)
        user._fieldsync_roles = cached
    return cached
