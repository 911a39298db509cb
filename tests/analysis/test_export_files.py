"""XLSX and GeoPackage exports: built by the export task from the same redacted stream as CSV
and GeoJSON, read back with openpyxl, GDAL's ogrinfo and sqlite3; each download logged; none
for a reader without rights."""
from __future__ import annotations

import io
import json
import sqlite3
import struct
import subprocess
import zipfile
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.gis.geos import Point
from django.utils import timezone
from openpyxl import load_workbook

from tests.sync.conftest import IN_LEIGH, observation_data

from .conftest import PERSONAL, last_log_id, reads_logged

FORMULA = '=HYPERLINK("http://evil.example","click")'
LEIGH_IDS = ("council_leigh", "council_leigh_east", "police_leigh", "council_wigan")


@pytest.fixture
def queued(monkeypatch):
    """Exports requested in a test: the ids handed to the queue (no worker runs them)."""
    from warden_app.tasks import export_build_task

    ids: list[str] = []
    monkeypatch.setattr(export_build_task, "apply_async", lambda args, **kw: ids.append(args[0]))
    return ids


def built_file(world, username: str, fmt: str, queued: list, **filters) -> tuple[str, bytes]:
    """Request an export through the API, run the Celery task's function as a worker
    would, then download the file as its owner: (export id, the file's bytes)."""
    from warden_app.tasks import export_build_task

    client = world.client(username)
    response = client.post("/api/v1/exports", {"type": "observation", "format": fmt, **filters},
                           content_type="application/json")
    assert response.status_code == 202, response.content
    export_id = response.json()["id"]
    assert queued[-1] == export_id
    export_build_task(export_id)
    status = client.get(f"/api/v1/exports/{export_id}").json()
    assert status["status"] == "ready", status
    response = client.get(f"/api/v1/exports/{export_id}/file")
    assert response.status_code == 200
    return export_id, b"".join(response.streaming_content)


def sheet_rows(content: bytes):
    sheet = load_workbook(io.BytesIO(content)).active
    rows = list(sheet.iter_rows())
    header = [cell.value for cell in rows[0]]
    return sheet, header, [dict(zip(header, row, strict=True)) for row in rows[1:]]


def csv_header(world, username: str) -> list[str]:
    response = world.client(username).get("/api/v1/records/observation", {"format": "csv"})
    return b"".join(response.streaming_content).decode().splitlines()[0].split(",")


# --- XLSX -------------------------------------------------------------------------------------

def test_xlsx_has_the_csv_columns_real_dates_and_numbers_and_no_formulas(tworld, queued):
    formula_id = tworld.push("warden_leigh", "observation", observation_data(
        IN_LEIGH, description=FORMULA, action_taken=["advice", "referral"]))
    _, content = built_file(tworld, "admin", "xlsx", queued)
    sheet, header, rows = sheet_rows(content)
    assert header == csv_header(tworld, "admin")
    assert sheet.freeze_panes == "A2"
    by_id = {row["id"].value: row for row in rows}
    assert len(by_id) == 6  # everything but the rejected record: the admin sees every personal field
    formula = by_id[formula_id]
    # Written as text: the exact description, a string cell, no formula anywhere in the sheet.
    assert formula["description"].value == FORMULA and formula["description"].data_type == "s"
    with zipfile.ZipFile(io.BytesIO(content)) as package:
        xml = package.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in xml and "<f " not in xml and "HYPERLINK" in xml
    assert formula["action_taken"].value == "advice;referral"
    assert formula["redacted"].value is None  # nothing held back: an empty cell
    # Numbers are numbers, times are Excel dates in UK local time.
    assert formula["version"].value == 1 and formula["version"].data_type == "n"
    assert abs(formula["longitude"].value - IN_LEIGH[0]) < 1e-9
    assert abs(formula["latitude"].value - IN_LEIGH[1]) < 1e-9
    from warden_app.models import Observation

    record = Observation.objects.get(pk=formula_id)
    observed = formula["observed_at"]
    assert observed.is_date and isinstance(observed.value, datetime)
    local = record.observed_at.astimezone(ZoneInfo("Europe/London")).replace(tzinfo=None)
    assert abs(observed.value - local) < timedelta(milliseconds=1)
    police = by_id[tworld.records["police_leigh"]]
    assert json.loads(police["persons_involved"].value) == [{"description": "driver, 20s"}]


def test_xlsx_for_an_analyst_without_a_grant_leaves_personal_fields_empty(tworld, queued):
    _, content = built_file(tworld, "analyst", "xlsx", queued)
    _, header, rows = sheet_rows(content)
    assert header == csv_header(tworld, "analyst")
    assert {row["id"].value for row in rows} == {tworld.records[k] for k in LEIGH_IDS}
    for row in rows:
        assert all(row[name].value is None for name in PERSONAL)
        assert row["redacted"].value == "description;persons_involved;photos"
    assert "Two youths" not in _all_text(content)


def _all_text(content: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(content)) as package:
        return "".join(package.read(name).decode(errors="replace") for name in package.namelist())


def test_xlsx_too_large_for_a_sheet_is_refused_up_front_and_at_build(tworld, queued, monkeypatch):
    from warden_app.analysis import export_files, workbooks
    from warden_app.models import Export
    from warden_app.services.exports import export_build

    monkeypatch.setattr(export_files, "XLSX_MAX_RECORDS", 3)
    response = tworld.client("admin").post("/api/v1/exports", {"type": "observation", "format": "xlsx"},
                                           content_type="application/json")
    assert response.status_code == 400
    assert response.json()["fields"]["format"][0]["code"] == "too_many_records"
    assert queued == [] and not Export.objects.exists()
    # Records written between the request and the build: the writer stops, the page says why.
    monkeypatch.setattr(workbooks, "XLSX_MAX_RECORDS", 3)
    export = Export.objects.create(owner=tworld.users["admin"], record_type="observation", format="xlsx", query={})
    with pytest.raises(workbooks.TooManyRows):
        export_build(export_id=export.pk)
    export.refresh_from_db()
    assert export.status == "failed" and "at most 3 records" in export.error and not export.file_name


# --- GeoPackage ---------------------------------------------------------------------------------

def ogrinfo(path, *args: str) -> str:
    result = subprocess.run(["ogrinfo", "-ro", *args, str(path)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_gpkg_opens_in_gdal_on_the_british_national_grid(tworld, queued, tmp_path):
    _, content = built_file(tworld, "admin", "gpkg", queued)
    path = tmp_path / "observation.gpkg"
    path.write_bytes(content)
    summary = ogrinfo(path, "-al", "-so")
    assert "Layer name: observation" in summary
    assert "Geometry: Point" in summary
    assert "Feature Count: 5" in summary  # the rejected record left out, as in every read
    assert 'ID["EPSG",27700]' in summary and "British National Grid" in summary
    for field in ("id: String", "version: Integer64", "description: String", "observed_at: DateTime",
                  "accuracy_m: Real", "persons_involved: String", "redacted: String"):
        assert field in summary, summary
    assert "longitude:" not in summary  # the geometry holds the location
    # The point is where the warden stood, in BNG metres (PostGIS and GDAL agree to the cm).
    expected = Point(*IN_LEIGH, srid=4326).transform(27700, clone=True)
    leigh = tworld.records["council_leigh"]
    full = ogrinfo(path, "-al", "-where", f"id = '{leigh}'")
    [point] = [line.strip() for line in full.splitlines() if line.strip().startswith("POINT")]
    x, y = (float(v) for v in point[len("POINT ("):-1].split())
    assert abs(x - expected.x) < 0.01 and abs(y - expected.y) < 0.01
    assert 350000 < x < 380000 and 390000 < y < 410000  # Leigh, on the grid
    assert "Two youths shouting at a woman" in full

    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
        assert db.execute("PRAGMA user_version").fetchone()[0] == 10300
        assert db.execute("SELECT data_type, srs_id FROM gpkg_contents WHERE table_name = 'observation'").fetchone() \
            == ("features", 27700)
        assert db.execute("SELECT column_name, geometry_type_name, srs_id FROM gpkg_geometry_columns").fetchall() \
            == [("geom", "POINT", 27700)]
        assert {row[0] for row in db.execute("SELECT srs_id FROM gpkg_spatial_ref_sys")} == {-1, 0, 4326, 27700}
        blob, observed = db.execute("SELECT geom, observed_at FROM observation WHERE id = ?", [leigh]).fetchone()
        assert blob[:2] == b"GP" and struct.unpack("<i", blob[4:8])[0] == 27700
        assert observed.endswith("Z") and datetime.fromisoformat(observed.replace("Z", "+00:00"))
        min_x, max_x = db.execute("SELECT min_x, max_x FROM gpkg_contents").fetchone()
        assert min_x <= x <= max_x
    finally:
        db.close()


def test_a_gpkg_for_an_analyst_with_a_grant_opens_only_the_granted_field(tworld, queued, tmp_path):
    from warden_app.services.sharing import purpose_grant_issue

    purpose_grant_issue(granted_by=tworld.users["admin"], user=tworld.users["analyst"], record_type="observation",
                        fields=["description"], purpose="Leigh ASB problem profile",
                        valid_until=timezone.now() + timedelta(days=1))
    before = last_log_id()
    _, content = built_file(tworld, "analyst", "gpkg", queued, qualifier="nuisance")
    path = tmp_path / "granted.gpkg"
    path.write_bytes(content)
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT id, qualifier, description, persons_involved, photos, redacted FROM observation") \
            .fetchall()
    finally:
        db.close()
    assert {r[0] for r in rows} == {tworld.records["council_leigh_east"], tworld.records["police_leigh"]}
    assert {r[1] for r in rows} == {"nuisance"}
    assert {r[2] for r in rows} == {"Group drinking by the library", "Music from a parked car"}
    assert all(r[3] is None and r[4] is None and r[5] == "persons_involved;photos" for r in rows)
    assert "driver, 20s" not in content.decode("latin-1")
    built, downloaded = reads_logged(before)
    assert built.details["format"] == "gpkg" and "description" in built.details["fields"]  # may be open
    assert built.purpose == "Leigh ASB problem profile"
    assert sorted(map(str, built.record_ids)) == sorted(r[0] for r in rows)
    assert downloaded.record_ids == built.record_ids


# --- the log and the refusals -------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["xlsx", "gpkg"])
def test_each_download_is_a_disclosure_naming_the_built_records(tworld, queued, fmt):
    before = last_log_id()
    export_id, _ = built_file(tworld, "supervisor_leigh", fmt, queued)
    client = tworld.client("supervisor_leigh")
    response = client.get(f"/api/v1/exports/{export_id}/file")
    assert response.status_code == 200
    assert response["Content-Type"] == {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                                        "gpkg": "application/geopackage+sqlite3"}[fmt]
    assert response["Content-Disposition"].endswith(f'.{fmt}"')
    b"".join(response.streaming_content)
    built, first, second = reads_logged(before)
    assert built.recipient == "supervisor_leigh (export file)" and built.details["format"] == fmt
    for download in (first, second):
        assert download.action == "disclosure" and download.recipient == "supervisor_leigh (export download)"
        assert download.record_ids == built.record_ids and download.details["export"] == export_id


def test_readers_without_rights_get_no_export_and_no_file(tworld, queued):
    from warden_app.permissions import forget_cached_rights

    for username in ("warden_leigh", "pcso_leigh", "partner_fire", "dpo"):
        client = tworld.client(username)
        for fmt in ("xlsx", "gpkg"):
            assert client.post("/api/v1/exports", {"type": "observation", "format": fmt},
                               content_type="application/json").status_code == 403
            assert client.get("/api/v1/records/observation", {"format": fmt}).status_code == 403
    assert queued == []
    export_id, _ = built_file(tworld, "analyst", "gpkg", queued)
    before = last_log_id()
    # Someone else, even an admin, does not see it; the owner who lost the role may not fetch it.
    assert tworld.client("admin").get(f"/api/v1/exports/{export_id}/file").status_code == 404
    analyst = tworld.users["analyst"]
    analyst.groups.clear()
    forget_cached_rights(analyst)
    assert tworld.client("analyst").get(f"/api/v1/exports/{export_id}/file").status_code == 403
    assert reads_logged(before) == []


def test_the_records_api_turns_xlsx_and_gpkg_reads_into_background_exports(tworld, queued):
    from warden_app.models import Export

    client = tworld.client("analyst")
    for fmt in ("xlsx", "gpkg"):
        response = client.get("/api/v1/records/observation", {"format": fmt, "qualifier": "nuisance"})
        assert response.status_code == 202, response.content
        body = response.json()
        assert body["format"] == fmt and body["filter"] == {"qualifier": "nuisance"}
        assert response["Location"].endswith(f"/api/v1/exports/{body['id']}")
    assert Export.objects.filter(format__in=["xlsx", "gpkg"]).count() == 2 and len(queued) == 2
    response = client.get("/api/v1/records/observation", {"format": "shp"})
    assert response.status_code == 400
    names = "json, geojson, csv, xlsx, gpkg"
    assert response.json()["fields"]["format"] == [{"code": "not_in_choices", "message": names}]
