"""OGC API - Features at /ogc/: the core resources, paging, bbox and datetime, the same
scope, redaction and s.62 logging as the records API; and GDAL's own OAPIF client reading
every collection and page into a GeoPackage, with HTTP Basic and with a personal token."""
from __future__ import annotations

import os
import sqlite3
import subprocess
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from tests.sync.conftest import IN_LEIGH

from .conftest import PASSWORD, PERSONAL, last_log_id, reads_logged

OBS_ITEMS = "/ogc/collections/observations/items"


def get(world, username, path, **params):
    return world.client(username).get(path, params)


def follow(world, username, path, **params) -> tuple[list[dict], int]:
    """Every feature of every page, following `next` links; and the number of pages."""
    features, pages = [], 0
    response = get(world, username, path, **params)
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        pages += 1
        features += body["features"]
        assert body["numberReturned"] == len(body["features"])
        nxt = [link["href"] for link in body["links"] if link["rel"] == "next"]
        if not nxt:
            return features, pages
        parts = urlsplit(nxt[0])
        response = world.client(username).get(parts.path + "?" + parts.query)


# --- the core resources ------------------------------------------------------------------------

def test_landing_page_links_the_api_conformance_and_collections(world):
    body = get(world, "analyst", "/ogc/").json()
    rels = {link["rel"]: link for link in body["links"]}
    assert {"self", "service-desc", "conformance", "data"} <= set(rels)
    assert rels["service-desc"]["href"].endswith("/ogc/api")
    assert rels["service-desc"]["type"].startswith("application/vnd.oai.openapi+json")


def test_conformance_declares_core_geojson_and_openapi(world):
    body = get(world, "analyst", "/ogc/conformance").json()
    assert {"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
            "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
            "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30"} <= set(body["conformsTo"])


def test_openapi_document(world):
    response = get(world, "analyst", "/ogc/api")
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    body = response.json()
    assert body["openapi"].startswith("3.0")
    assert "/collections/{collectionId}/items" in body["paths"]


def test_collections_and_one_collection(world):
    body = get(world, "analyst", "/ogc/collections").json()
    ids = [c["id"] for c in body["collections"]]
    assert {"observations", "audit_items"} <= set(ids)
    observations = get(world, "analyst", "/ogc/collections/observations").json()
    assert observations["id"] == "observations" and observations["itemType"] == "feature"
    items = [link for link in observations["links"] if link["rel"] == "items"]
    assert items and items[0]["type"] == "application/geo+json"
    minx, miny, maxx, maxy = observations["extent"]["spatial"]["bbox"][0]
    assert minx < IN_LEIGH[0] < maxx and miny < IN_LEIGH[1] < maxy
    assert get(world, "analyst", "/ogc/collections/people").status_code == 404


def test_json_whatever_accept_says_and_f_json_is_understood(world):
    response = world.client("analyst").get("/ogc/collections", HTTP_ACCEPT="text/html")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert get(world, "analyst", "/ogc/collections", f="json").status_code == 200
    assert get(world, "analyst", "/ogc/collections", f="html").status_code == 400


@pytest.mark.parametrize(("username", "status"), [
    (None, 401), ("warden_leigh", 403), ("partner_fire", 403), ("analyst", 200), ("supervisor_leigh", 200),
])
def test_same_permissions_as_the_records_api(world, username, status):
    assert get(world, username, OBS_ITEMS).status_code == status
    assert get(world, username, "/ogc/").status_code == status


# --- items -------------------------------------------------------------------------------------

def test_items_page_by_keyset_and_return_every_visible_record_once(world):
    features, pages = follow(world, "analyst", OBS_ITEMS, limit="1")
    assert pages == 4  # a page looks one record ahead: no empty last page
    assert len(features) == len({f["id"] for f in features}) == 4
    for feature in features:
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Point"
        assert all(feature["properties"][name] is None for name in PERSONAL)


def test_items_bbox_and_datetime(world):
    x, y = IN_LEIGH
    features, _ = follow(world, "analyst", OBS_ITEMS, bbox=f"{x - 0.001},{y - 0.001},{x + 0.001},{y + 0.001}")
    assert {f["id"] for f in features} == {world.records["council_leigh"], world.records["police_leigh"]}
    cut = (timezone.now() - timedelta(hours=2, minutes=30)).isoformat().replace("+00:00", "Z")
    features, _ = follow(world, "analyst", OBS_ITEMS, datetime=f"../{cut}")
    assert {f["id"] for f in features} == {world.records["council_leigh"]}
    features, _ = follow(world, "analyst", OBS_ITEMS, datetime=f"{cut}/..")
    assert world.records["council_leigh"] not in {f["id"] for f in features} and len(features) == 3


def test_items_refuse_unknown_parameters_and_clamp_the_limit(world, settings):
    assert get(world, "analyst", OBS_ITEMS, colour="red").status_code == 400
    assert get(world, "analyst", OBS_ITEMS, datetime="soon").status_code == 400
    settings.ANALYSIS_PAGE_MAX = 2
    body = get(world, "analyst", OBS_ITEMS, limit="1000").json()
    assert body["numberReturned"] == 2


def test_one_item(world):
    record = world.records["council_wigan"]
    body = get(world, "analyst", f"/ogc/collections/observations/items/{record}").json()
    assert body["id"] == record and body["properties"]["incident_type"] == "littering_drugs_paraphernalia"
    assert get(world, "supervisor_leigh", f"/ogc/collections/observations/items/{record}").status_code == 404
    assert get(world, "analyst", "/ogc/collections/observations/items/nope").status_code == 400


def test_audit_items_collection(world):
    features, _ = follow(world, "analyst", "/ogc/collections/audit_items/items")
    by_id = {f["id"]: f["properties"] for f in features}
    assert by_id[world.records["litter"]]["grade"] == "C"
    assert by_id[world.records["fly_tipping"]]["street_audit"] == world.records["audit"]


# --- logging -----------------------------------------------------------------------------------

def test_every_page_with_personal_fields_is_a_disclosure_to_the_client(world):
    before = last_log_id()
    features, pages = follow(world, "supervisor_leigh", OBS_ITEMS, limit="2")
    rows = reads_logged(before)
    assert len(features) == 4 and len(rows) == pages == 2
    assert all(row.action == "disclosure" and row.recipient.startswith("supervisor_leigh via OGC API")
               for row in rows)
    assert sorted(str(i) for row in rows for i in row.record_ids) == sorted(f["id"] for f in features)
    assert rows[0].details["view"] == "ogc.items" and rows[0].details["collection"] == "observations"
    before = last_log_id()
    one = features[0]["id"]
    get(world, "supervisor_leigh", f"/ogc/collections/observations/items/{one}")
    [row] = reads_logged(before)
    assert row.action == "disclosure" and [str(i) for i in row.record_ids] == [one]


def test_pages_without_personal_fields_log_nothing(world):
    before = last_log_id()
    follow(world, "analyst", OBS_ITEMS, limit="2")
    follow(world, "supervisor_leigh", "/ogc/collections/audit_items/items")
    assert reads_logged(before) == []


# --- GDAL's own client -------------------------------------------------------------------------

def gdal(*args: str, auth: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "GDAL_HTTP_UNSAFESSL": "NO", "CPL_DEBUG": "OFF", "GDAL_DISABLE_READDIR_ON_OPEN": "YES"}
    result = subprocess.run([*args[:1], *auth, *args[1:]], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    return result


def gpkg_rows(path, table: str) -> dict[str, dict]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(f'SELECT * FROM "{table}"').fetchall()
    return {row["id"]: dict(row) for row in rows}


def basic_auth(username: str) -> list[str]:
    return ["--config", "GDAL_HTTP_AUTH", "BASIC", "--config", "GDAL_HTTP_USERPWD", f"{username}:{PASSWORD}"]


def test_ogrinfo_lists_the_collections(tworld, live_server):
    result = gdal("ogrinfo", "-ro", "-al", "-so", f"OAPIF:{live_server.url}/ogc/", auth=basic_auth("analyst"))
    out = result.stdout
    for collection in ("observations", "street_audits", "audit_items"):
        assert f"Layer name: {collection}" in out, out
    assert "incident_type: String" in out and "persons_involved" in out, out


def test_ogr2ogr_copies_every_record_with_the_analysts_redaction(tworld, live_server, tmp_path):
    out = tmp_path / "analyst.gpkg"
    before = last_log_id()
    gdal("ogr2ogr", "-f", "GPKG", str(out), f"OAPIF:{live_server.url}/ogc/", "-oo", "PAGE_SIZE=2",
         auth=basic_auth("analyst"))
    observations = gpkg_rows(out, "observations")
    r = tworld.records
    assert set(observations) == {r["council_leigh"], r["council_leigh_east"], r["police_leigh"], r["council_wigan"]}
    for row in observations.values():
        assert row["description"] is None and row["persons_involved"] is None
        assert row["incident_type"] and row["geom"] is not None
    assert set(gpkg_rows(out, "audit_items")) == {r["litter"], r["fly_tipping"]}
    assert set(gpkg_rows(out, "street_audits")) == {r["audit"]}
    assert reads_logged(before) == []  # nothing personal left


def test_ogr2ogr_with_a_personal_token_and_a_purpose_grant(tworld, live_server, tmp_path):
    from warden_app.services.api_tokens import api_token_create
    from warden_app.services.sharing import purpose_grant_issue

    grant = purpose_grant_issue(granted_by=tworld.users["admin"], user=tworld.users["analyst"],
                                record_type="observation", fields=["description", "persons_involved"],
                                purpose="Leigh ASB problem profile", valid_until=timezone.now() + timedelta(days=1))
    _, token = api_token_create(user=tworld.users["analyst"], name="GDAL")
    out = tmp_path / "granted.gpkg"
    before = last_log_id()
    gdal("ogr2ogr", "-f", "GPKG", str(out), f"OAPIF:{live_server.url}/ogc/collections/observations",
         "-oo", "PAGE_SIZE=3", auth=["--config", "GDAL_HTTP_HEADERS", f"Authorization: Bearer {token}"])
    rows = gpkg_rows(out, "observations")
    assert len(rows) == 4
    assert rows[tworld.records["police_leigh"]]["description"] == "Music from a parked car"
    assert "driver, 20s" in rows[tworld.records["police_leigh"]]["persons_involved"]
    assert all(row["photos"] is None for row in rows.values())  # not granted
    logged = reads_logged(before)
    assert len(logged) >= 2  # four records in pages of three
    assert all(row.action == "disclosure" and row.purpose == grant.purpose for row in logged)
    # GDAL reads the first page twice (once to learn the schema): each read is logged.
    assert {str(i) for row in logged for i in row.record_ids} == set(rows)


def test_gdal_with_a_wrong_password_or_as_a_warden_reads_nothing(tworld, live_server):
    env = {**os.environ}
    for auth in (["--config", "GDAL_HTTP_AUTH", "BASIC", "--config", "GDAL_HTTP_USERPWD", "analyst:wrong"],
                 basic_auth("warden_leigh")):
        result = subprocess.run(["ogrinfo", "-ro", "-so", *auth, f"OAPIF:{live_server.url}/ogc/"],
                                capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode != 0 and "Layer name" not in result.stdout
