"""Who is asking for an aggregate: someone inside the partnership (and over which areas),
or a partner viewer, whose outputs leave it."""
from __future__ import annotations

from dataclasses import dataclass

from ..permissions import ANALYSE_AREA, REVIEW_AREA, area_ids_with, can_analyse, can_view_aggregates
from ..roles import Role, roles_of


@dataclass(frozen=True)
class Audience:
    partner: bool
    # Internal callers: operational areas whose records they may aggregate; None = all.
    scope_area_ids: frozenset[int] | None = None


def aggregate_audience(user) -> Audience | None:
    """None: no aggregates at all (field staff, DPO, anyone else).

    Analysts (all areas, or those granted), supervisors (the areas they supervise) and
    admins are inside the partnership: exact counts and free filters. A partner viewer
    holding none of those roles gets partner outputs only.
    """
    if not can_view_aggregates(user):
        return None
    roles = roles_of(user)
    if Role.ADMIN in roles or can_analyse(user):
        return Audience(partner=False)
    internal = False
    scope: set[int] = set()
    if Role.ANALYST in roles:
        internal = True
        scope |= area_ids_with(user, ANALYSE_AREA)
    if Role.SUPERVISOR in roles:
        internal = True
        scope |= area_ids_with(user, REVIEW_AREA)
    if internal:
        return Audience(partner=False, scope_area_ids=frozenset(scope))
    return Audience(partner=True)
