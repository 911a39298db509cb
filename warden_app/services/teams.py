"""Teams: create them, set their areas, add members. Area rights follow as guardian grants."""
from django.contrib.auth.models import Group
from django.db import transaction
from guardian.shortcuts import assign_perm, remove_perm

from ..models import Area, Team
from ..permissions import RECORD_IN_AREA, REVIEW_AREA, forget_cached_rights


@transaction.atomic
def team_get_or_create(*, name: str) -> Team:
    team = Team.objects.filter(name=name).first()
    if team:
        return team
    field_group, _ = Group.objects.get_or_create(name=f"team:{name}:field")
    supervisor_group, _ = Group.objects.get_or_create(name=f"team:{name}:supervisors")
    team = Team.objects.create(name=name, field_group=field_group, supervisor_group=supervisor_group)
    assign_perm("warden_app.supervise_team", supervisor_group, team)
    return team


@transaction.atomic
def team_set_areas(*, team: Team, areas: list[Area]) -> None:
    """Make `areas` the team's areas: field staff record there, supervisors review there."""
    wanted = {area.pk for area in areas}
    current = set(team.areas.values_list("id", flat=True))
    for area in Area.objects.filter(pk__in=current - wanted):
        remove_perm(f"warden_app.{RECORD_IN_AREA}", team.field_group, area)
        remove_perm(f"warden_app.{RECORD_IN_AREA}", team.supervisor_group, area)
        remove_perm(f"warden_app.{REVIEW_AREA}", team.supervisor_group, area)
    for area in Area.objects.filter(pk__in=wanted - current):
        assign_perm(f"warden_app.{RECORD_IN_AREA}", team.field_group, area)
        assign_perm(f"warden_app.{RECORD_IN_AREA}", team.supervisor_group, area)
        assign_perm(f"warden_app.{REVIEW_AREA}", team.supervisor_group, area)
    team.areas.set(list(wanted))


@transaction.atomic
def team_add_member(*, team: Team, user, supervisor: bool = False) -> None:
    user.groups.add(team.supervisor_group if supervisor else team.field_group)
    forget_cached_rights(user)


@transaction.atomic
def team_remove_member(*, team: Team, user) -> None:
    user.groups.remove(team.supervisor_group, team.field_group)
    forget_cached_rights(user)
