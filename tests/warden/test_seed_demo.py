"""manage.py seed_demo builds product.md's demo partnership, and running it again changes nothing."""
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.contrib.gis.geos import Point
from django.core.management import call_command

from warden_app.choices import GRADED_ISSUE_TYPES, ActionTaken, IncidentType, IssueType, Qualifier
from warden_app.models import (
    Area,
    AreaGroupObjectPermission,
    BoundarySet,
    FormDefinition,
    Organisation,
    Team,
    TeamGroupObjectPermission,
    User,
)
from warden_app.permissions import RECORD_IN_AREA, REVIEW_AREA, area_ids_with
from warden_app.roles import Role
from warden_app.services.demo import DEMO_PASSWORD

pytestmark = pytest.mark.django_db

# product.md, "Demo partnership": user → (organisation, role, team, supervises the team)
PRODUCT_TABLE = {
    "warden_leigh": ("Wigan Council", Role.WARDEN, "Leigh", False),
    "warden_wigan": ("Wigan Council", Role.WARDEN, "Wigan", False),
    "pcso_leigh": ("Greater Manchester Police", Role.PCSO, "Leigh", False),
    "supervisor_leigh": ("Wigan Council", Role.SUPERVISOR, "Leigh", True),
    "analyst": ("Wigan Council", Role.ANALYST, None, False),
    "partner_fire": ("Greater Manchester Fire and Rescue Service", Role.PARTNER_VIEWER, None, False),
    "dpo": ("Wigan Council", Role.DPO, None, False),
    "admin": ("Wigan Council", Role.ADMIN, None, False),
}
ROLE_NAMES = {role.value for role in Role}


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def snapshot() -> dict:
    """Every row the seed writes, with every column, keyed by table."""
    tables = {
        "organisation": Organisation.objects.order_by("pk").values(),
        "boundary_set": BoundarySet.objects.order_by("pk").values(),
        "area": Area.objects.order_by("pk").values("pk", "boundary_set", "code", "name", "geom"),
        "team": Team.objects.order_by("pk").values(),
        "team_areas": Team.areas.through.objects.order_by("pk").values(),
        "user": User.objects.order_by("pk").values(),
        "user_groups": User.groups.through.objects.order_by("pk").values(),
        "group": Group.objects.order_by("pk").values(),
        "group_permissions": Group.permissions.through.objects.order_by("pk").values(),
        "area_grants": AreaGroupObjectPermission.objects.order_by("pk").values(),
        "team_grants": TeamGroupObjectPermission.objects.order_by("pk").values(),
        "form": FormDefinition.objects.order_by("pk").values(),
    }
    return {name: [_comparable(row) for row in rows] for name, rows in tables.items()}


def _comparable(row: dict) -> dict:
    return {key: value.wkt if hasattr(value, "wkt") else value for key, value in row.items()}


def test_running_twice_leaves_the_database_as_it_was():
    seed()
    first = snapshot()
    seed()
    second = snapshot()
    assert {name: len(rows) for name, rows in second.items()} == {
        name: len(rows) for name, rows in first.items()
    }
    assert second == first  # same ids, same columns, passwords not even re-hashed


def test_counts_are_those_of_product_md():
    seed()
    seed()
    assert Organisation.objects.count() == 3
    assert BoundarySet.objects.count() == 1
    assert Area.objects.count() == 2
    assert Team.objects.count() == 2
    assert User.objects.count() == len(PRODUCT_TABLE)
    assert Group.objects.filter(name__in=ROLE_NAMES).count() == len(Role)
    assert FormDefinition.objects.count() == 2


def test_every_user_gets_the_default_password():
    seed()
    for username in PRODUCT_TABLE:
        assert User.objects.get(username=username).check_password(DEMO_PASSWORD), username


def test_password_option_resets_every_demo_password():
    seed()
    seed("--password", "another-demo-secret")
    for username in PRODUCT_TABLE:
        user = User.objects.get(username=username)
        assert user.check_password("another-demo-secret"), username
        assert not user.check_password(DEMO_PASSWORD), username


def test_users_have_the_organisation_role_and_team_of_the_product_table(demo):
    for username, (organisation, role, team_name, supervises) in PRODUCT_TABLE.items():
        user = User.objects.get(username=username)
        assert user.organisation.name == organisation, username
        assert set(user.groups.filter(name__in=ROLE_NAMES).values_list("name", flat=True)) == {
            role.value
        }, username
        assert user.is_active, username
        assert not user.is_superuser, username  # a superuser would read the access log
        assert user.is_staff == (role in (Role.ADMIN, Role.DPO)), username  # the DPO: access log pages
        teams_in = set(
            Team.objects.filter(field_group__user=user).values_list("name", flat=True)
        )
        teams_supervised = set(
            Team.objects.filter(supervisor_group__user=user).values_list("name", flat=True)
        )
        if team_name is None:
            assert teams_in == teams_supervised == set(), username
        elif supervises:
            assert (teams_in, teams_supervised) == (set(), {team_name}), username
        else:
            assert (teams_in, teams_supervised) == ({team_name}, set()), username


def test_analyst_holds_the_model_wide_analysis_grant(demo):
    assert User.objects.get(username="analyst").has_perm("warden_app.analyse_area")
    for username in PRODUCT_TABLE.keys() - {"analyst"}:
        assert not User.objects.get(username=username).has_perm("warden_app.analyse_area")


def test_teams_work_their_town_centre(demo):
    leigh, wigan = demo.areas["LEIGH-TC"], demo.areas["WIGAN-TC"]
    assert list(demo.teams["Leigh"].areas.all()) == [leigh]
    assert list(demo.teams["Wigan"].areas.all()) == [wigan]
    users = {name: User.objects.get(username=name) for name in PRODUCT_TABLE}
    assert area_ids_with(users["warden_leigh"], RECORD_IN_AREA) == {leigh.pk}
    assert area_ids_with(users["pcso_leigh"], RECORD_IN_AREA) == {leigh.pk}
    assert area_ids_with(users["warden_wigan"], RECORD_IN_AREA) == {wigan.pk}
    assert area_ids_with(users["supervisor_leigh"], REVIEW_AREA) == {leigh.pk}
    assert area_ids_with(users["warden_leigh"], REVIEW_AREA) == frozenset()


@pytest.mark.parametrize(
    ("code", "name", "latitude", "longitude"),
    [
        ("LEIGH-TC", "Leigh Town Centre", 53.4975, -2.5170),
        ("WIGAN-TC", "Wigan Town Centre", 53.5450, -2.6325),
    ],
)
def test_areas_are_one_kilometre_squares_around_the_town_centres(
    demo, code, name, latitude, longitude
):
    area = Area.objects.get(code=code)
    assert area.name == name
    assert area.boundary_set.name == "Partnership areas"
    assert area.boundary_set.slug == "partnership-areas"
    assert area.boundary_set.operational
    assert area.geom.srid == 4326 and area.geom.geom_type == "MultiPolygon"
    assert area.geom.valid
    # Measured on the British National Grid (PostGIS's generated copy), in metres.
    centre = Point(longitude, latitude, srid=4326)
    centre.transform(27700)
    assert area.geom_bng.centroid.distance(centre) < 1
    assert area.geom_bng.area == pytest.approx(1_000_000, rel=0.001)
    min_x, min_y, max_x, max_y = area.geom_bng.extent
    assert max_x - min_x == pytest.approx(1000, abs=0.5)
    assert max_y - min_y == pytest.approx(1000, abs=0.5)


def test_default_forms_list_the_domain_code_lists(demo):
    observation = FormDefinition.objects.get(record_type="observation", version=1)
    assert observation.title == "ASB observation"
    assert observation.definition == {
        "incident_types": IncidentType.values,
        "qualifiers": Qualifier.values,
        "action_taken": ActionTaken.values,
    }
    audit = FormDefinition.objects.get(record_type="street_audit", version=1)
    assert audit.title == "Environmental visual audit"
    checklist = audit.definition["checklist"]
    assert [item["code"] for item in checklist] == IssueType.values
    assert {item["code"] for item in checklist if item["graded"]} == set(GRADED_ISSUE_TYPES)
    assert all(item["label"] for item in checklist)


def test_a_second_run_restores_what_was_changed_in_between(demo):
    warden = User.objects.get(username="warden_leigh")
    warden.groups.add(Group.objects.get(name=Role.ANALYST.value))
    warden.groups.add(demo.teams["Wigan"].field_group, demo.teams["Leigh"].supervisor_group)
    warden.is_staff = True
    warden.save()
    User.objects.filter(username="admin").update(is_superuser=True)
    seed()
    warden.refresh_from_db()
    assert set(warden.groups.filter(name__in=ROLE_NAMES).values_list("name", flat=True)) == {"warden"}
    assert not warden.is_staff
    assert list(warden.groups.exclude(name__in=ROLE_NAMES)) == [demo.teams["Leigh"].field_group]
    assert not User.objects.get(username="admin").is_superuser


def test_a_published_form_version_is_never_rewritten(demo):
    """Records were validated against version 1 as published; the seed must not edit it."""
    FormDefinition.objects.filter(record_type="observation", version=1).update(title="Local title")
    seed()
    assert FormDefinition.objects.get(record_type="observation", version=1).title == "Local title"


def test_command_reports_what_it_made():
    out = seed()
    assert "Area LEIGH-TC Leigh Town Centre" in out
    assert "User pcso_leigh (Greater Manchester Police)" in out
    assert "Demo partnership ready." in out
