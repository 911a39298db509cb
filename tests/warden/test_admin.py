"""The admin works for the real admin role (staff in group "admin", not a superuser), keeps
team grants in step, hides what the role must not have, and every page it and the API docs
serve loads its scripts and styles from the project only."""
import json
import uuid
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
import yaml
from django.contrib import admin
from django.contrib.auth.models import Group
from django.contrib.gis.geos import MultiPolygon, Point, Polygon
from django.urls import reverse
from django.utils import timezone

from fieldsync.sync import registry
from fieldsync.sync.models import Device
from warden_app import permissions, sync_types
from warden_app.models import (
    Area,
    AreaGroupObjectPermission,
    BoundarySet,
    FormDefinition,
    Observation,
    Organisation,
    Team,
    User,
)
from warden_app.roles import Role
from warden_app.services.teams import team_add_member, team_get_or_create, team_set_areas

pytestmark = pytest.mark.django_db

# (app label, model name, whether the admin role may add one by hand)
ADMIN_MODELS = [
    ("warden_app", "organisation", True),
    ("warden_app", "user", True),
    ("warden_app", "boundaryset", True),
    ("warden_app", "area", True),
    ("warden_app", "team", True),
    ("warden_app", "formdefinition", True),
    ("warden_app", "observation", False),
    ("warden_app", "streetaudit", False),
    ("warden_app", "audititem", False),
    ("auth", "group", True),
    ("sync", "device", False),
    ("sync", "receipt", False),
    ("sync", "conflict", False),
    ("sync", "quarantinedmutation", False),
]


class AssetCollector(HTMLParser):
    """Every URL a page makes the browser fetch by itself: scripts, styles, icons, images."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in {"script", "img", "iframe"} and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])


def page_assets(html: str) -> list[str]:
    collector = AssetCollector()
    collector.feed(html)
    return collector.urls


def assert_assets_local(response) -> list[str]:
    urls = page_assets(response.content.decode())
    foreign = [url for url in urls if urlsplit(url).scheme or urlsplit(url).netloc]
    assert not foreign, f"{response.request['PATH_INFO']} loads from outside: {foreign}"
    return urls


def square(lon: float, lat: float, half: float = 0.005) -> MultiPolygon:
    ring = (
        (lon - half, lat - half), (lon + half, lat - half), (lon + half, lat + half),
        (lon - half, lat + half), (lon - half, lat - half),
    )
    return MultiPolygon(Polygon(ring), srid=4326)


@pytest.fixture
def council():
    return Organisation.objects.create(name="Wigan Council", slug="wigan-council", kind="council")


@pytest.fixture
def admin_user(role_groups, council):
    user = User.objects.create_user(
        username="admin", password="fieldsync-demo", is_staff=True, organisation=council
    )
    user.groups.add(role_groups[Role.ADMIN])
    assert not user.is_superuser
    return user


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def operational():
    return BoundarySet.objects.create(name="Partnership areas", slug="areas", operational=True)


@pytest.fixture
def leigh(operational):
    return Area.objects.create(
        boundary_set=operational, name="Leigh Town Centre", code="leigh",
        geom=square(-2.5170, 53.4975),
    )


@pytest.fixture
def wigan(operational):
    return Area.objects.create(
        boundary_set=operational, name="Wigan Town Centre", code="wigan",
        geom=square(-2.6325, 53.5450),
    )


def person(username: str, role: Role, groups: dict, organisation=None) -> User:
    user = User.objects.create_user(username=username, password="x", organisation=organisation)
    user.groups.add(groups[role])
    return user


# --- every page loads, from the project only ----------------------------------------------

@pytest.mark.parametrize(("app_label", "model_name", "addable"), ADMIN_MODELS)
def test_changelist_and_add_page(admin_client, app_label, model_name, addable, leigh):
    changelist = admin_client.get(reverse(f"admin:{app_label}_{model_name}_changelist"))
    assert changelist.status_code == 200
    assert_assets_local(changelist)

    add = admin_client.get(reverse(f"admin:{app_label}_{model_name}_add"))
    # Records, devices and sync outcomes are made by sync, never by hand.
    assert add.status_code == (200 if addable else 403)
    if addable:
        assert_assets_local(add)


def test_index_lists_the_admin_models(admin_client):
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert_assets_local(response)
    for app_label, model_name, _ in ADMIN_MODELS:
        assert reverse(f"admin:{app_label}_{model_name}_changelist") in response.content.decode()


def test_area_change_page_has_the_leaflet_widget(admin_client, leigh):
    response = admin_client.get(reverse("admin:warden_app_area_change", args=[leigh.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    urls = assert_assets_local(response)
    assert any(url.startswith("/static/leaflet/leaflet") and url.endswith(".js") for url in urls)
    assert "/static/leaflet/draw/leaflet.draw.js" in urls
    assert "/static/leaflet/leaflet.css" in urls
    assert 'id="id_geom-map"' in html  # the map container the widget draws into
    assert "L.Map.djangoMap" in html
    # Not Django's default GIS widget, which pulls OpenLayers from a CDN.
    assert "OLMapWidget" not in html and "/ol.js" not in html and "openlayers" not in html.lower()
    # The stored geometry is in the form for the map to draw and edit.
    assert "&quot;MultiPolygon&quot;" in html


def test_every_editable_geometry_uses_leaflet():
    """Django's default GIS widget loads OpenLayers from a CDN; no admin may fall back to it."""
    from django.contrib.gis.db.models import GeometryField
    from leaflet.admin import LeafletGeoAdminMixin

    for model, model_admin in admin.site._registry.items():
        geometries = [
            f for f in model._meta.get_fields()
            if isinstance(f, GeometryField) and f.editable and not f.generated
        ]
        if geometries:
            assert isinstance(model_admin, LeafletGeoAdminMixin), model


def test_area_map_has_no_basemap_unless_tile_url_is_set(admin_client, leigh):
    html = admin_client.get(reverse("admin:warden_app_area_change", args=[leigh.pk])).content
    assert b"tile.openstreetmap.org" not in html
    assert b'"layers": []' in html


def test_area_saved_from_the_map_geojson(admin_client, operational):
    geom = square(-2.55, 53.50)
    response = admin_client.post(
        reverse("admin:warden_app_area_add"),
        {"boundary_set": operational.pk, "name": "Atherleigh", "code": "ath", "geom": geom.geojson},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    area = Area.objects.get(code="ath")
    assert area.geom.equals_exact(geom, tolerance=1e-9)
    # 0.01 degrees square at 53.5 N is about 0.66 km x 1.11 km in British National Grid metres.
    assert area.geom_bng.srid == 27700 and 700_000 < area.geom_bng.area < 780_000


# --- teams go through the services, so grants follow --------------------------------------

def test_team_added_with_areas_and_members_gets_grants(admin_client, role_groups, leigh, wigan):
    warden = person("warden_leigh", Role.WARDEN, role_groups)
    supervisor = person("supervisor_leigh", Role.SUPERVISOR, role_groups)
    response = admin_client.post(
        reverse("admin:warden_app_team_add"),
        {
            "name": "Leigh",
            "areas": [leigh.pk],
            "field_staff": [warden.pk],
            "supervisors": [supervisor.pk],
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    team = Team.objects.get(name="Leigh")
    assert team.field_group.name == "team:Leigh:field"
    assert list(team.areas.all()) == [leigh]
    assert permissions.can_record_in(User.objects.get(pk=warden.pk), leigh)
    assert not permissions.can_record_in(User.objects.get(pk=warden.pk), wigan)
    assert permissions.can_review(User.objects.get(pk=supervisor.pk), leigh)
    assert User.objects.get(pk=supervisor.pk).has_perm("warden_app.supervise_team", team)


def test_team_area_change_moves_the_grants(admin_client, role_groups, leigh, wigan):
    warden = person("warden_leigh", Role.WARDEN, role_groups)
    team = team_get_or_create(name="Leigh")
    team_set_areas(team=team, areas=[leigh])
    team_add_member(team=team, user=warden)

    response = admin_client.post(
        reverse("admin:warden_app_team_change", args=[team.pk]),
        {"areas": [wigan.pk], "field_staff": [warden.pk], "supervisors": []},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    warden = User.objects.get(pk=warden.pk)
    assert permissions.area_ids_with(warden, permissions.RECORD_IN_AREA) == {wigan.pk}
    assert not AreaGroupObjectPermission.objects.filter(content_object=leigh).exists()


def test_team_member_removed_loses_rights(admin_client, role_groups, leigh):
    warden = person("warden_leigh", Role.WARDEN, role_groups)
    team = team_get_or_create(name="Leigh")
    team_set_areas(team=team, areas=[leigh])
    team_add_member(team=team, user=warden)

    response = admin_client.post(
        reverse("admin:warden_app_team_change", args=[team.pk]),
        {"areas": [leigh.pk], "field_staff": [], "supervisors": []},
    )
    assert response.status_code == 302
    assert not permissions.can_record_in(User.objects.get(pk=warden.pk), leigh)


def test_team_delete_withdraws_its_grants_and_groups(admin_client, role_groups, leigh):
    warden = person("warden_leigh", Role.WARDEN, role_groups)
    team = team_get_or_create(name="Leigh")
    team_set_areas(team=team, areas=[leigh])
    team_add_member(team=team, user=warden)
    group_ids = [team.field_group_id, team.supervisor_group_id]

    response = admin_client.post(
        reverse("admin:warden_app_team_delete", args=[team.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not Team.objects.exists()
    assert not Group.objects.filter(pk__in=group_ids).exists()
    assert not AreaGroupObjectPermission.objects.exists()
    assert not permissions.can_record_in(User.objects.get(pk=warden.pk), leigh)


# --- devices ------------------------------------------------------------------------------

@pytest.fixture
def device_policy(monkeypatch):
    """The domain's device policy; a stand-in asking the same permission function if the
    domain has not registered one yet."""
    if registry._device_policy:
        return registry.device_policy()

    class StandIn:
        def can_revoke(self, user, device):
            return permissions.can_revoke_device(user, device)

        def device_logged(self, *, user, device, action):
            pass

    monkeypatch.setattr(registry, "_device_policy", [StandIn()])
    return registry.device_policy()


def test_revoke_action_sets_revoked_at_and_by(admin_client, admin_user, role_groups, device_policy):
    warden = person("warden_leigh", Role.WARDEN, role_groups)
    device = Device.objects.create(user=warden, label="Handheld 1", token_hash="a" * 64)
    other = Device.objects.create(user=warden, label="Handheld 2", token_hash="b" * 64)

    response = admin_client.post(
        reverse("admin:sync_device_changelist"),
        {"action": "revoke_devices", "_selected_action": [str(device.pk)]},
    )
    assert response.status_code == 302
    device.refresh_from_db()
    other.refresh_from_db()
    assert device.revoked_at is not None and device.revoked_by == admin_user
    assert other.revoked_at is None


def test_device_page_never_shows_the_token_hash(admin_client, role_groups):
    warden = person("warden_leigh", Role.WARDEN, role_groups)
    device = Device.objects.create(user=warden, label="Handheld 1", token_hash="c" * 64)
    response = admin_client.get(reverse("admin:sync_device_change", args=[device.pk]))
    assert response.status_code == 200
    assert "c" * 64 not in response.content.decode()


# --- what the admin role must not do or see -----------------------------------------------

def test_admin_cannot_make_superusers_or_hand_out_protected_roles(admin_client, role_groups):
    warden = person("warden_leigh", Role.WARDEN, role_groups)
    url = reverse("admin:warden_app_user_change", args=[warden.pk])
    html = admin_client.get(url).content.decode()
    assert 'name="is_superuser"' not in html
    assert 'name="user_permissions"' not in html
    assert f'value="{role_groups[Role.DPO].pk}"' not in html

    response = admin_client.post(url, {
        "username": warden.username, "is_active": "on",
        "groups": [role_groups[Role.WARDEN].pk, role_groups[Role.DPO].pk],
        "is_superuser": "on", "date_joined_0": "2025-01-01", "date_joined_1": "00:00:00",
    })
    assert response.status_code == 200  # the form refuses the DPO group
    assert "Select a valid choice" in response.content.decode()
    warden.refresh_from_db()
    assert not warden.is_superuser
    assert not warden.groups.filter(name=Role.DPO).exists()


def test_admin_cannot_change_a_dpo_or_their_password(admin_client, role_groups):
    dpo = person("dpo", Role.DPO, role_groups)
    password_url = reverse("admin:auth_user_password_change", args=[dpo.pk])
    assert admin_client.get(password_url).status_code == 403
    response = admin_client.post(
        reverse("admin:warden_app_user_change", args=[dpo.pk]),
        {"username": "renamed", "is_active": "on"},
    )
    assert response.status_code == 403
    assert User.objects.get(pk=dpo.pk).username == "dpo"


def test_admin_sets_a_users_organisation_and_roles(admin_client, role_groups, council):
    police = Organisation.objects.create(name="GMP", slug="gmp", kind="police")
    pcso = person("pcso_leigh", Role.WARDEN, role_groups, council)
    response = admin_client.post(
        reverse("admin:warden_app_user_change", args=[pcso.pk]),
        {
            "username": pcso.username, "is_active": "on", "organisation": police.pk,
            "groups": [role_groups[Role.PCSO].pk],
            "date_joined_0": "2025-01-01", "date_joined_1": "00:00:00",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    pcso.refresh_from_db()
    assert pcso.organisation == police
    assert set(pcso.groups.values_list("name", flat=True)) == {Role.PCSO}


def test_admin_adds_a_user_with_an_organisation(admin_client, council):
    response = admin_client.post(
        reverse("admin:warden_app_user_add"),
        {"username": "warden_new", "organisation": council.pk, "usable_password": "true",
         "password1": "a-long-Pass-phrase-9", "password2": "a-long-Pass-phrase-9"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    user = User.objects.get(username="warden_new")
    assert user.organisation == council and user.check_password("a-long-Pass-phrase-9")


def test_admin_cannot_edit_role_group_permissions(admin_client, role_groups):
    group = role_groups[Role.ANALYST]
    response = admin_client.post(
        reverse("admin:auth_group_change", args=[group.pk]), {"name": "analyst", "permissions": []}
    )
    assert response.status_code == 403
    assert group.permissions.exists()


def test_admin_role_has_no_access_log_rights(admin_client, admin_user):
    """Whatever model holds the access log, the admin role may not open it (product.md)."""
    codenames = Group.objects.get(name=Role.ADMIN).permissions.values_list(
        "content_type__model", flat=True
    )
    assert not [model for model in codenames if "access" in model]
    for model in admin.site._registry:
        if "access" in model._meta.model_name:
            url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
            assert admin_client.get(url).status_code == 403


def test_observation_page_leaves_out_personal_details(admin_client, admin_user, council, leigh):
    form = FormDefinition.objects.create(record_type="observation", version=1, title="ASB")
    now = timezone.now()
    observation = Observation.objects.create(
        id=uuid.uuid4(), author=admin_user, organisation=council, form=form, created_at=now,
        updated_at=now, observed_at=now, location=Point(-2.5170, 53.4975, srid=4326),
        qualifier="nuisance", incident_type="street_drinking",
        description="Man in a red coat shouting", persons_involved=[{"name": "Jane Doe"}],
    )
    observation.refresh_from_db()
    assert observation.area == leigh  # placed by the database trigger

    response = admin_client.get(
        reverse("admin:warden_app_observation_change", args=[observation.pk])
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Street drinking" in html and "Leigh Town Centre" in html
    assert "Jane Doe" not in html and "red coat" not in html
    assert 'name="incident_type"' not in html  # read-only: no form inputs


def test_form_definition_version_is_fixed_once_published(
    admin_client, admin_user, django_capture_on_commit_callbacks
):
    assert sync_types._form("street_audit", None) is None  # cached: no form yet
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:warden_app_formdefinition_add"),
            {"record_type": "street_audit", "version": 1, "title": "EVA",
             "definition": json.dumps({"checklist": [{"code": "litter", "graded": True}]})},
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    form = FormDefinition.objects.get()
    assert form.published_by == admin_user
    # The sync engine sees the newly published version without a restart.
    assert sync_types._form("street_audit", None)[:2] == (form.pk, 1)

    admin_client.post(
        reverse("admin:warden_app_formdefinition_change", args=[form.pk]),
        {"record_type": "observation", "version": 7, "title": "EVA v1",
         "definition": json.dumps({"checklist": []})},
    )
    form.refresh_from_db()
    assert (form.record_type, form.version, form.title) == ("street_audit", 1, "EVA v1")
    assert form.definition == {"checklist": [{"code": "litter", "graded": True}]}


# --- API docs -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["api-docs", "api-redoc"])
def test_api_docs_pages_load_only_local_assets(admin_client, name):
    response = admin_client.get(reverse(name))
    assert response.status_code == 200
    urls = assert_assets_local(response)
    assert any(url.startswith("/static/drf_spectacular_sidecar/") for url in urls)
    html = response.content.decode()
    assert "fonts.googleapis.com" not in html and "cdn.jsdelivr.net" not in html


def test_api_docs_load_for_anonymous_visitors_too(client):
    assert client.get(reverse("api-docs")).status_code == 200


def test_schema_is_openapi_3(admin_client):
    response = admin_client.get(reverse("schema"))
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert str(schema["openapi"]).startswith("3.")
    assert schema["info"]["title"] == "fieldsync API"
    assert isinstance(schema["paths"], dict)

    as_json = admin_client.get(reverse("schema"), {"format": "json"})
    assert as_json.status_code == 200
    assert json.loads(as_json.content)["openapi"] == schema["openapi"]
