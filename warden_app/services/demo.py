"""The demo partnership of product.md: organisations, areas, teams, users and default forms.

Idempotent: every run brings the database to the same state, updating rows in place (same
ids) and writing nothing that already matches, so it is safe to run on every start.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import Group
from django.contrib.gis.geos import MultiPolygon, Point, Polygon
from django.db import transaction
from django.db.models import Q
from django.utils.text import slugify

from ..choices import OrganisationKind
from ..forms_default import default_forms
from ..models import Area, BoundarySet, FormDefinition, Organisation, Team, User
from ..models.areas import BNG_SRID
from ..permissions import forget_cached_rights
from ..roles import Role
from .boundaries import WGS84_SRID, area_upsert, boundary_set_get_or_create
from .roles import role_groups_ensure
from .sharing import sharing_defaults_ensure
from .teams import team_add_member, team_get_or_create, team_set_areas

# The documented demo password (product.md), not a secret.
DEMO_PASSWORD = "fieldsync-demo"

COUNCIL = "Wigan Council"
POLICE = "Greater Manchester Police"
FIRE = "Greater Manchester Fire and Rescue Service"
ORGANISATIONS = {
    COUNCIL: OrganisationKind.COUNCIL,
    POLICE: OrganisationKind.POLICE,
    FIRE: OrganisationKind.FIRE,
}

PARTNERSHIP_SET = "Partnership areas"
LEIGH, WIGAN = "LEIGH-TC", "WIGAN-TC"
# code → (name, latitude, longitude of the centre)
AREAS = {
    LEIGH: ("Leigh Town Centre", 53.4975, -2.5170),
    WIGAN: ("Wigan Town Centre", 53.5450, -2.6325),
}
AREA_SIDE_M = 1000
# team → its area codes
TEAMS = {"Leigh": [LEIGH], "Wigan": [WIGAN]}


@dataclass(frozen=True)
class DemoUser:
    username: str
    organisation: str
    role: Role
    team: str | None = None
    supervisor: bool = False
    # Admins use Django's admin site, and the DPO its access log pages (the only ones the
    # DPO's role opens); nobody is a superuser, since a superuser would hold every right.
    staff: bool = False


USERS = (
    DemoUser("warden_leigh", COUNCIL, Role.WARDEN, team="Leigh"),
    DemoUser("warden_wigan", COUNCIL, Role.WARDEN, team="Wigan"),
    DemoUser("pcso_leigh", POLICE, Role.PCSO, team="Leigh"),
    DemoUser("supervisor_leigh", COUNCIL, Role.SUPERVISOR, team="Leigh", supervisor=True),
    DemoUser("analyst", COUNCIL, Role.ANALYST),
    DemoUser("partner_fire", FIRE, Role.PARTNER_VIEWER),
    DemoUser("dpo", COUNCIL, Role.DPO, staff=True),
    DemoUser("admin", COUNCIL, Role.ADMIN, staff=True),
)


@dataclass(frozen=True)
class DemoPartnership:
    organisations: dict[str, Organisation]  # by name
    boundary_set: BoundarySet
    areas: dict[str, Area]  # by code
    teams: dict[str, Team]  # by name
    users: dict[str, User]  # by username
    forms: dict[str, FormDefinition]  # by record type


def square_around(*, latitude: float, longitude: float, side_m: float) -> MultiPolygon:
    """A square `side_m` wide on the British National Grid, as a MultiPolygon in EPSG:4326.

    Built in metres (EPSG:27700) so "1 km across" holds; in degrees it would not.
    """
    centre = Point(longitude, latitude, srid=WGS84_SRID)
    centre.transform(BNG_SRID)
    half = side_m / 2
    square = Polygon.from_bbox((centre.x - half, centre.y - half, centre.x + half, centre.y + half))
    square.srid = BNG_SRID
    square.transform(WGS84_SRID)
    return MultiPolygon(square, srid=WGS84_SRID)


@transaction.atomic
def demo_seed(*, password: str = DEMO_PASSWORD) -> DemoPartnership:
    """Create or restore the demo partnership; every demo user gets `password`."""
    if not password:
        raise ValueError("the demo users need a password")
    role_groups = role_groups_ensure()
    sharing_defaults_ensure()
    organisations = {name: _organisation(name=name, kind=kind) for name, kind in ORGANISATIONS.items()}

    boundary_set, _ = boundary_set_get_or_create(name=PARTNERSHIP_SET, operational=True)
    areas = {
        code: area_upsert(
            boundary_set=boundary_set,
            code=code,
            name=name,
            geom=square_around(latitude=latitude, longitude=longitude, side_m=AREA_SIDE_M),
        )[0]
        for code, (name, latitude, longitude) in AREAS.items()
    }

    teams = {}
    for team_name, codes in TEAMS.items():
        team = team_get_or_create(name=team_name)
        team_set_areas(team=team, areas=[areas[code] for code in codes])
        teams[team_name] = team

    users = {}
    for spec in USERS:
        user = _user(spec=spec, organisation=organisations[spec.organisation], password=password)
        # A demo user holds exactly its one role and team place, whatever changed in between.
        team = teams.get(spec.team)
        wanted = [role_groups[spec.role]]
        if team:
            wanted.append(team.supervisor_group if spec.supervisor else team.field_group)
        user.groups.remove(*[g for g in _role_and_team_groups(user, role_groups) if g not in wanted])
        user.groups.add(role_groups[spec.role])
        forget_cached_rights(user)
        if team:
            team_add_member(team=team, user=user, supervisor=spec.supervisor)
        users[spec.username] = user

    forms = {}
    for record_type, (title, definition) in default_forms().items():
        # A published version is never rewritten: records were validated against it.
        forms[record_type], _ = FormDefinition.objects.get_or_create(
            record_type=record_type, version=1, defaults={"title": title, "definition": definition}
        )

    return DemoPartnership(
        organisations=organisations,
        boundary_set=boundary_set,
        areas=areas,
        teams=teams,
        users=users,
        forms=forms,
    )


def _role_and_team_groups(user: User, role_groups: dict[Role, Group]) -> list[Group]:
    return list(
        user.groups.filter(
            Q(pk__in=[group.pk for group in role_groups.values()])
            | Q(team_as_field__isnull=False)
            | Q(team_as_supervisors__isnull=False)
        )
    )


def _organisation(*, name: str, kind: str) -> Organisation:
    organisation, created = Organisation.objects.get_or_create(
        name=name, defaults={"slug": _slug(name), "kind": kind}
    )
    if not created and organisation.kind != kind:
        organisation.kind = kind
        organisation.save(update_fields=["kind"])
    return organisation


def _slug(name: str) -> str:
    return slugify(name)[: Organisation._meta.get_field("slug").max_length]


def _user(*, spec: DemoUser, organisation: Organisation, password: str) -> User:
    user, _ = User.objects.get_or_create(username=spec.username)
    changed = []
    if user.organisation_id != organisation.pk:
        user.organisation = organisation
        changed.append("organisation")
    wanted = {
        "is_active": True,
        "is_staff": spec.staff,
        "is_superuser": False,
    }
    for field, value in wanted.items():
        if getattr(user, field) != value:
            setattr(user, field, value)
            changed.append(field)
    # Hashing salts afresh each time: only re-hash when the password really changes, so a
    # second run leaves the row as it was.
    if not user.check_password(password):
        user.set_password(password)
        changed.append("password")
    if changed:
        user.save(update_fields=changed)
    return user
