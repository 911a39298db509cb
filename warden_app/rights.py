"""What a user holds, read in one statement per request: their roles (the groups named
after roles) and their area grants (guardian object permissions on areas, through their
groups or given to them directly).

Every request asks several permission questions (a push: may this user record here; a
pull: which keys, which fields); answering each from its own query cost a push of one
mutation four ORM round trips, a third of its time. The answers live on the user object,
which each request loads afresh, so a change of rights is seen by the next request.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from fieldsync import db

from .roles import Role

_ATTR = "_fieldsync_rights"


@dataclass(frozen=True)
class Rights:
    roles: frozenset[str]
    areas: dict[str, frozenset[int]]  # permission codename -> area ids


NONE = Rights(frozenset(), {})


@cache
def _rights_sql() -> str:
    from django.contrib.auth.models import Group, Permission

    from .models import AreaGroupObjectPermission, AreaUserObjectPermission, User

    memberships = User.groups.through._meta.db_table
    by_group = AreaGroupObjectPermission._meta.db_table
    direct = AreaUserObjectPermission._meta.db_table
    permission = Permission._meta.db_table
    return f"""
WITH mine AS (SELECT group_id FROM {memberships} WHERE user_id = %(user)s)
SELECT 'role', g.name, NULL::bigint FROM {Group._meta.db_table} g
WHERE g.id IN (SELECT group_id FROM mine) AND g.name = ANY(%(roles)s::text[])
UNION ALL
SELECT 'area', p.codename, gp.content_object_id FROM {by_group} gp JOIN {permission} p ON p.id = gp.permission_id
WHERE gp.group_id IN (SELECT group_id FROM mine)
UNION ALL
SELECT 'area', p.codename, up.content_object_id FROM {direct} up JOIN {permission} p ON p.id = up.permission_id
WHERE up.user_id = %(user)s
"""


def rights_of(user) -> Rights:
    """The user's roles and area grants, read once per user object (inactive or anonymous
    users hold nothing)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return NONE
    rights = getattr(user, _ATTR, None)
    if rights is None:
        roles: set[str] = set()
        areas: dict[str, set[int]] = {}
        with db.cursor() as cursor:
            cursor.execute(_rights_sql(), {"user": user.pk, "roles": [role.value for role in Role]})
            for kind, name, area_id in cursor.fetchall():
                if kind == "role":
                    roles.add(name)
                else:
                    areas.setdefault(name, set()).add(area_id)
        rights = Rights(frozenset(roles), {codename: frozenset(ids) for codename, ids in areas.items()})
        setattr(user, _ATTR, rights)
    return rights


def forget_rights(user) -> None:
    """Read the user's rights afresh next time (they changed within this request)."""
    if hasattr(user, _ATTR):
        delattr(user, _ATTR)
