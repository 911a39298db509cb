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
    """The role names of a user, read with their area grants once per request (rights.py)."""
    from .rights import rights_of

    return rights_of(user).roles
