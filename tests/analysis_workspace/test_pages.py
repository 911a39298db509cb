"""The analyst workspace: the records API's scope, redaction and logging, on pages."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.analysis.conftest import last_log_id, reads_logged
from tests.sync.conftest import IN_LEIGH


def record_url(record_type: str, record_id: str) -> str:
    return f"/analysis/records/{record_type}/{record_id}"


# --- doors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("username", ["warden_leigh", "pcso_leigh", "partner_fire", "dpo"])
@pytest.mark.parametrize("url", ["/analysis/", "/analysis/connect/", "/analysis/grants/", "/analysis/exports/"])
def test_roles_without_the_records_api_get_the_door_closed_page(signed_in, username, url):
    response = signed_in(username).get(url)
    assert response.status_code == 403
    assert b"Sign out" in response.content or b"sign out" in response.content.lower()


def test_anonymous_is_sent_to_sign_in(client, world):
    response = client.get("/analysis/")
    assert response.status_code == 302 and "next=/analysis/" in response["Location"]


# --- map and list ------------------------------------------------------------------------------

def test_the_list_shows_the_analysts_records_with_labels_not_codes(signed_in, world):
    body = signed_in("analyst").get("/analysis/").content.decode()
    r = world.records
    for label in ("council_leigh", "police_leigh", "council_wigan"):
        assert r[label] in body
    assert r["council_outside"] not in body  # outside every area the analyst may analyse
    assert r["rejected"] not in body
    assert "Rowdy or inconsiderate behaviour" in body and "rowdy_inconsiderate<" not in body
    assert ">Personal<" in body and ">Submitted<" in body


def test_filters_are_the_apis(signed_in, world):
    body = signed_in("analyst").get("/analysis/", {"qualifier": "nuisance"}).content.decode()
    assert world.records["council_leigh_east"] in body and world.records["police_leigh"] in body
    assert world.records["council_leigh"] not in body


def test_polygon_filter_selects_records_inside_the_drawn_shape(signed_in, world):
    lon, lat = IN_LEIGH
    square = (f"POLYGON(({lon - .001} {lat - .001}, {lon + .001} {lat - .001}, {lon + .001} {lat + .001}, "
              f"{lon - .001} {lat + .001}, {lon - .001} {lat - .001}))")
    body = signed_in("analyst").get("/analysis/", {"polygon": square}).content.decode()
    assert world.records["council_leigh"] in body
    assert world.records["council_leigh_east"] not in body  # 200 m east
    assert world.records["council_wigan"] not in body


@pytest.mark.parametrize("query", [
    {"polygon": "POLYGON((0 0, 1 1"}, {"polygon": "POINT(0 0)"}, {"from": "yesterday"}, {"qualifier": "'; drop"},
    {"area": "-1"}, {"type": "nothing"}, {"type": ["observation", "street_audit"]}, {"after": "not-a-uuid"},
    {"grade": "A"}, {"evil": "1"}, {"organisation": "<script>"}, {"from": "2026-05-01", "to": "2026-04-01"},
])
def test_hostile_query_strings_get_a_400_page(signed_in, world, query):
    response = signed_in("analyst").get("/analysis/", query)
    assert response.status_code == 400
    assert b"The workspace cannot show that" in response.content


def test_the_list_page_logs_personal_reads_as_the_api_does(signed_in, world):
    since = last_log_id()
    signed_in("supervisor_leigh").get("/analysis/")
    rows = reads_logged(since)
    assert len(rows) == 1 and rows[0].action == "consultation"
    assert rows[0].details["view"] == "workspace.records.list"
    assert world.records["council_leigh"] in {str(i) for i in rows[0].record_ids}


def test_no_personal_field_open_no_log_row(signed_in, world):
    since = last_log_id()
    signed_in("analyst").get("/analysis/")
    assert reads_logged(since) == []


# --- record pages ------------------------------------------------------------------------------

def test_an_analyst_without_a_grant_sees_personal_fields_as_withheld(signed_in, world):
    since = last_log_id()
    response = signed_in("analyst").get(record_url("observation", world.records["council_leigh"]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "Two youths shouting" not in body and "red jacket" not in body
    assert body.count(">withheld<") == 3
    assert "Rowdy or inconsiderate behaviour" in body
    assert reads_logged(since) == []


def test_a_purpose_grant_opens_the_field_and_the_read_is_logged_with_its_purpose(signed_in, world):
    from warden_app.services.sharing import purpose_grant_issue

    purpose_grant_issue(granted_by=world.users["admin"], user=world.users["analyst"], record_type="observation",
                        fields=["description"], purpose="repeat victim review",
                        valid_until=timezone.now() + timedelta(days=1))
    since = last_log_id()
    body = signed_in("analyst").get(record_url("observation", world.records["council_leigh"])).content.decode()
    assert "Two youths shouting" in body and "red jacket" not in body
    assert body.count(">withheld<") == 2
    [row] = reads_logged(since)
    assert row.action == "consultation" and row.purpose == "repeat victim review"
    assert row.details["view"] == "workspace.records.detail" and row.details["fields"] == ["description"]
    assert [str(i) for i in row.record_ids] == [world.records["council_leigh"]]


def test_a_record_outside_the_analysts_scope_is_a_404_page(signed_in, world):
    outside = world.records["council_outside"]
    assert signed_in("supervisor_leigh").get(record_url("observation", outside)).status_code == 200
    response = signed_in("analyst").get(record_url("observation", outside))
    assert response.status_code == 404 and b"No such record" in response.content
    assert signed_in("analyst").get(record_url("observation", str(uuid.uuid4()))).status_code == 404
    assert signed_in("analyst").get(record_url("nothing", world.records["council_leigh"])).status_code == 404


def test_a_record_page_shows_its_review_history(signed_in, world):
    body = signed_in("admin").get(record_url("observation", world.records["rejected"])).content.decode()
    assert "Rejected by supervisor_leigh" in body


def test_audit_item_pages_label_issue_and_grade(signed_in, world):
    body = signed_in("analyst").get(record_url("audit_item", world.records["litter"])).content.decode()
    assert "Litter" in body and "C: widespread minor accumulations" in body


# --- layers ------------------------------------------------------------------------------------

def test_the_map_carries_the_internal_counts_of_the_aggregates_selectors(signed_in, world):
    response = signed_in("analyst").get("/analysis/")
    layers = response.context["map_data"]["layers"]
    counts = {f["properties"]["name"]: f["properties"]["count"] for f in layers["counts"]["features"]}
    assert sum(counts.values()) == 4  # exact: the four observations in areas, rejected left out
    assert layers["hotspots"]["type"] == "FeatureCollection"


def layer_counts(response) -> dict[str, int]:
    layers = response.context["map_data"]["layers"]
    return {f["properties"]["name"]: f["properties"]["count"] for f in layers["counts"]["features"]}


def test_the_layers_follow_the_category_filter(signed_in, world):
    counts = layer_counts(signed_in("analyst").get("/analysis/", {"incident_type": "street_drinking"}))
    assert sum(counts.values()) == 1  # the Leigh drinking only; the qualifier-free layers used to show 4


def test_the_layers_follow_the_area_filter(signed_in, world):
    from warden_app.models import Area

    leigh = Area.objects.get(name__icontains="Leigh", boundary_set__operational=True)
    counts = layer_counts(signed_in("analyst").get("/analysis/", {"area": str(leigh.pk)}))
    assert set(counts) == {leigh.name} and counts[leigh.name] == 3  # two council, one police


# --- exports -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["csv", "xlsx", "geojson", "gpkg"])
def test_the_map_offers_a_download_in_each_format(signed_in, world, fmt):
    body = signed_in("analyst").get("/analysis/", {"qualifier": "nuisance"}).content.decode()
    assert f'<input type="hidden" name="format" value="{fmt}">' in body
    assert '<input type="hidden" name="qualifier" value="nuisance">' in body


def test_an_export_posted_from_the_map_is_the_analysts_and_keeps_the_filter(signed_in, world, settings):
    from warden_app.models import Export

    settings.CELERY_TASK_ALWAYS_EAGER = False
    client = signed_in("analyst")
    response = client.post("/analysis/exports/", {"type": "observation", "format": "xlsx", "qualifier": "nuisance"})
    assert response.status_code in (302, 503)
    if response.status_code == 302:
        export = Export.objects.get(owner=world.users["analyst"])
        assert export.query == {"qualifier": "nuisance"} and export.format == "xlsx"
        assert "Your exports" in client.get(response["Location"]).content.decode()


@pytest.mark.parametrize("data", [{"type": "observation", "format": "exe"}, {"type": "x", "format": "csv"},
                                  {"type": "observation", "format": "csv", "polygon": "nonsense"}])
def test_a_bad_export_request_is_a_400_page(signed_in, world, data):
    assert signed_in("analyst").post("/analysis/exports/", data).status_code == 400


# --- connect and tokens ------------------------------------------------------------------------

def test_connect_shows_this_servers_urls_and_a_token_once(signed_in, world):
    client = signed_in("analyst")
    body = client.get("/analysis/connect/").content.decode()
    assert "http://testserver/ogc/" in body and "ogr2ogr" in body
    created = client.post("/analysis/connect/tokens", {"name": "QGIS"}).content.decode()
    assert "fsp_" in created and "shown this once" in created
    from warden_app.models import ApiToken

    token = ApiToken.objects.get(user=world.users["analyst"])
    assert client.get("/analysis/connect/").content.decode().count(token.prefix) == 1
    assert "shown this once" not in client.get("/analysis/connect/").content.decode()


def test_tokens_are_revoked_only_by_their_owner(signed_in, world):
    from warden_app.models import ApiToken
    from warden_app.services.api_tokens import api_token_create

    row, _ = api_token_create(user=world.users["supervisor_leigh"], name="theirs")
    assert signed_in("analyst").post(f"/analysis/connect/tokens/{row.pk}/revoke").status_code == 404
    assert ApiToken.objects.get(pk=row.pk).revoked_at is None
    assert signed_in("supervisor_leigh").post(f"/analysis/connect/tokens/{row.pk}/revoke").status_code == 302
    assert ApiToken.objects.get(pk=row.pk).revoked_at is not None
