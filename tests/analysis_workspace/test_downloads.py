"""The map's download buttons: CSV and GeoJSON stream straight away (scoped, redacted, logged
as the records API's streams are); XLSX, GeoPackage and reads too large to stream become
background exports shown under "Your exports"."""
from __future__ import annotations

import csv
import io
import json

import pytest
from django.test import Client

from tests.analysis.conftest import PERSONAL, build_analysis_world, last_log_id, reads_logged


@pytest.fixture
def tworld(transactional_db, media):
    """Committed: a stream reads on a connection of its own."""
    return build_analysis_world()


@pytest.fixture
def queued(monkeypatch):
    from warden_app.tasks import export_build_task

    ids: list[str] = []
    monkeypatch.setattr(export_build_task, "apply_async", lambda args, **kw: ids.append(args[0]))
    return ids


def signed_in(world, username: str) -> Client:
    client = Client()
    client.force_login(world.users[username])
    return client


def post_download(client: Client, fmt: str, **filters):
    return client.post("/analysis/exports/", {"type": "observation", "format": fmt, **filters})


def test_csv_downloads_straight_away_with_the_filter_redacted_for_the_analyst(tworld, queued):
    before = last_log_id()
    response = post_download(signed_in(tworld, "analyst"), "csv", qualifier="nuisance")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"] == 'attachment; filename="observation.csv"'
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert {row["id"] for row in rows} == {tworld.records["council_leigh_east"], tworld.records["police_leigh"]}
    assert all(row["description"] == "" and row["redacted"] == ";".join(PERSONAL) for row in rows)
    assert reads_logged(before) == [] and queued == []  # nothing personal left; nothing queued


def test_geojson_for_the_admin_is_a_logged_disclosure(tworld, queued):
    before = last_log_id()
    response = post_download(signed_in(tworld, "admin"), "geojson")
    assert response.status_code == 200
    features = json.loads(b"".join(response.streaming_content))["features"]
    [entry] = reads_logged(before)
    assert entry.action == "disclosure" and entry.recipient == "admin"
    assert entry.details["view"] == "workspace.download.geojson"
    assert sorted(map(str, entry.record_ids)) == sorted(f["id"] for f in features)


@pytest.mark.parametrize("fmt", ["xlsx", "gpkg"])
def test_xlsx_and_gpkg_are_prepared_in_the_background(tworld, queued, fmt):
    from warden_app.models import Export

    client = signed_in(tworld, "analyst")
    response = post_download(client, fmt, qualifier="nuisance")
    assert response.status_code == 302 and response["Location"].endswith(f"?requested={fmt}")
    export = Export.objects.get(owner=tworld.users["analyst"])
    assert export.format == fmt and export.query == {"qualifier": "nuisance"} and queued == [str(export.pk)]
    page = client.get(response["Location"]).content.decode()
    assert "file is being prepared in the background" in page
    assert {"xlsx": "Excel (XLSX)", "gpkg": "GeoPackage"}[fmt] in page


def test_a_read_too_large_to_stream_becomes_an_export(tworld, queued, settings):
    from warden_app.models import Export

    settings.ANALYSIS_STREAM_MAX_ROWS = 1
    before = last_log_id()
    client = signed_in(tworld, "admin")
    response = post_download(client, "csv")
    assert response.status_code == 302 and response["Location"].endswith("?requested=csv&large=1")
    assert Export.objects.get().format == "csv" and len(queued) == 1
    assert reads_logged(before) == []  # nothing read yet: the worker will
    page = client.get(response["Location"]).content.decode()
    assert "more than 1 records, too many to download straight away" in page


def test_a_reader_of_no_records_gets_the_closed_door(tworld, queued):
    response = post_download(signed_in(tworld, "warden_leigh"), "csv")
    assert response.status_code in (302, 403) and not getattr(response, "streaming", False)
    assert queued == []
