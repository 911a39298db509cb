"""GeoJSON and CSV exports: streamed from a server-side cursor under one snapshot, with the
s.62 disclosure row committed (and naming exactly the streamed records) before the first
byte; large ones built by a real Celery worker into a file only its owner can fetch."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from tests.sync.conftest import IN_LEIGH, mutation, observation_data
from tests.sync.test_attachments import CLOSED_PORT, celery_redis

from .conftest import PERSONAL, last_log_id, reads_logged

URL = "/api/v1/records/observation"
VENV_BIN = Path(sys.executable).parent


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


def committed_log_rows(after_id: int) -> list[tuple]:
    """Read the log from another connection: only committed rows are seen there."""
    with psycopg.connect(_test_database_url()) as conn:
        return conn.execute(
            "SELECT id, action, record_ids::text[], recipient FROM warden_app_accesslogentry "
            "WHERE id > %s AND action IN ('consultation', 'disclosure') ORDER BY id", [after_id]
        ).fetchall()


def _test_database_url() -> str:
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + quote(django_settings.DATABASES["default"]["NAME"])))


def backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


# --- streamed GeoJSON and CSV ------------------------------------------------------------------

def test_geojson_stream_redacted_for_the_analyst_logs_nothing(tworld):
    before = last_log_id()
    response = tworld.client("analyst").get(URL, {"format": "geojson"})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/geo+json"
    collection = json.loads(body_of(response))
    assert collection["type"] == "FeatureCollection"
    features = collection["features"]
    assert {f["id"] for f in features} == {tworld.records[k] for k in
                                           ("council_leigh", "council_leigh_east", "police_leigh", "council_wigan")}
    for feature in features:
        assert feature["geometry"]["type"] == "Point"
        assert all(feature["properties"][name] is None for name in PERSONAL)
        assert feature["properties"]["redacted"] == list(PERSONAL)
    assert reads_logged(before) == []


def test_disclosure_row_is_committed_before_the_first_byte_and_names_every_streamed_record(tworld):
    before = last_log_id()
    response = tworld.client("admin").get(URL, {"format": "geojson", "include_rejected": "true"})
    assert response.status_code == 200
    # Nothing has been read from the body yet, and the row is already visible elsewhere.
    [(entry_id, action, logged, recipient)] = committed_log_rows(before)
    assert action == "disclosure" and recipient == "admin"
    assert response["X-Access-Log-Entry"] == str(entry_id)
    features = json.loads(body_of(response))["features"]
    assert sorted(logged) == sorted(f["id"] for f in features) and len(features) == 6
    by_id = {f["id"]: f["properties"] for f in features}
    assert by_id[tworld.records["police_leigh"]]["persons_involved"] == [{"description": "driver, 20s"}]


def test_the_log_and_the_stream_share_one_snapshot(tworld):
    """A record written after the stream opened is neither streamed nor logged; a record
    changed meanwhile is streamed as it was."""
    before = last_log_id()
    response = tworld.client("admin").get(URL, {"format": "csv"})
    assert response.status_code == 200
    late = str(uuid.uuid4())
    result = tworld.handheld("warden_leigh").push_one(mutation("observation", "create", late, observation_data(
        IN_LEIGH, description="written while the export ran")))
    assert result["status"] == "applied"
    rows = list(csv.DictReader(io.StringIO(body_of(response).decode())))
    streamed = {row["id"] for row in rows}
    assert late not in streamed and len(streamed) == 5
    [(_, _, logged, _)] = committed_log_rows(before)
    assert set(logged) == streamed


def test_csv_has_coordinates_lists_and_no_live_formulas(tworld):
    tworld.push("warden_leigh", "observation", observation_data(
        IN_LEIGH, description="=HYPERLINK(\"http://evil.example\")", action_taken=["advice", "referral"]), "formula")
    response = tworld.client("admin").get(URL, {"format": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="observation.csv"'
    reader = csv.DictReader(io.StringIO(body_of(response).decode()))
    assert reader.fieldnames[0] == "id" and reader.fieldnames[-3:] == ["longitude", "latitude", "redacted"]
    rows = {row["id"]: row for row in reader}
    formula = rows[tworld.records["formula"]]
    assert formula["description"].startswith("'=HYPERLINK")
    assert formula["action_taken"] == "advice;referral"
    assert abs(float(formula["longitude"]) - IN_LEIGH[0]) < 1e-9
    assert abs(float(formula["latitude"]) - IN_LEIGH[1]) < 1e-9
    assert formula["redacted"] == ""
    assert json.loads(rows[tworld.records["police_leigh"]]["persons_involved"]) == [{"description": "driver, 20s"}]


def test_csv_for_the_analyst_marks_what_is_redacted(tworld):
    rows = list(csv.DictReader(io.StringIO(body_of(tworld.client("analyst").get(URL, {"format": "csv"})).decode())))
    assert len(rows) == 4
    assert all(row["description"] == "" and row["redacted"] == "description;persons_involved;photos" for row in rows)


def test_an_abandoned_stream_gives_its_connection_back(tworld):
    client = tworld.client("admin")
    client.get(URL)  # warm the request connection
    idle = backends()
    response = client.get(URL, {"format": "geojson"})
    assert backends() == idle + 1  # the stream's own connection, holding the snapshot
    next(iter(response.streaming_content))
    response.close()
    deadline = time.monotonic() + 5  # a closed backend leaves pg_stat_activity a moment later
    while backends() != idle and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backends() == idle


def test_reads_over_the_limit_become_background_exports(tworld, settings, monkeypatch):
    from warden_app.tasks import export_build_task

    queued = []
    monkeypatch.setattr(export_build_task, "apply_async", lambda args, **kw: queued.append(args))
    settings.ANALYSIS_STREAM_MAX_ROWS = 3
    before = last_log_id()
    response = tworld.client("analyst").get(URL, {"format": "geojson"})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and response["Location"].endswith(f"/api/v1/exports/{body['id']}")
    assert queued == [[body["id"]]]
    response = tworld.client("analyst").get(URL, {"format": "csv", "async": "true", "qualifier": "personal"})
    assert response.status_code == 202 and response.json()["filter"] == {"qualifier": "personal"}
    assert reads_logged(before) == []  # nothing read yet


def test_no_queue_no_export(tworld):
    with celery_redis(CLOSED_PORT):
        response = tworld.client("analyst").post("/api/v1/exports", {"type": "observation", "format": "csv"},
                                                 content_type="application/json")
    assert response.status_code == 503 and response.json()["code"] == "busy"
    from warden_app.models import Export

    assert Export.objects.get().status == "failed"


# --- background exports: a real worker ----------------------------------------------------------

@pytest.fixture
def export_queue(monkeypatch):
    from fieldsync.celery import app
    from warden_app.tasks import export_build_task

    queue = f"fieldsync-test-exports-{uuid.uuid4().hex[:12]}"
    monkeypatch.setattr(export_build_task, "queue", queue, raising=False)
    monkeypatch.setattr(export_build_task, "_exec_options", None)
    yield queue
    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        keys = [key for pattern in (f"{queue}*", f"_kombu.binding.{queue}*") for key in client.scan_iter(match=pattern)]
        if keys:
            client.delete(*keys)


@pytest.fixture
def worker(tworld, media, export_queue, tmp_path):
    env = {**os.environ, "DATABASE_URL": _test_database_url(), "MEDIA_ROOT": str(media),
           "FIELDSYNC_HTTPS": "false", "DJANGO_SETTINGS_MODULE": "fieldsync.settings"}
    env.pop("DEBUG", None)
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [str(VENV_BIN / "celery"), "-A", "fieldsync", "worker", "-l", "warning", "--pool=solo", "--concurrency=1",
         "-Q", export_queue, "-n", f"{export_queue}@%h", "--without-gossip", "--without-mingle",
         "--without-heartbeat"],
        cwd=django_settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def wait_ready(client, export_id: str, tmp_path, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/v1/exports/{export_id}").json()
        if body["status"] in ("ready", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError((tmp_path / "worker.log").read_text())


def test_a_worker_builds_the_export_and_only_its_owner_fetches_it(tworld, worker, media, tmp_path):
    client = tworld.client("admin")
    before = last_log_id()
    response = client.post("/api/v1/exports", {"type": "observation", "format": "geojson", "qualifier": "nuisance"},
                           content_type="application/json")
    assert response.status_code == 202, response.content
    export_id = response.json()["id"]
    body = wait_ready(client, export_id, tmp_path)
    assert body["status"] == "ready", (tmp_path / "worker.log").read_text()
    assert body["row_count"] == 3 and body["file"].endswith(f"/api/v1/exports/{export_id}/file")
    [built] = reads_logged(before)
    assert built.action == "disclosure" and built.recipient == "admin (export file)"
    assert built.details["export"] == export_id and built.details["view"] == "api.exports.build"
    # Someone else, even with every right, neither sees nor fetches it.
    other = tworld.client("analyst")
    assert other.get(f"/api/v1/exports/{export_id}").status_code == 404
    assert other.get(f"/api/v1/exports/{export_id}/file").status_code == 404
    assert len(reads_logged(before)) == 1
    response = client.get(f"/api/v1/exports/{export_id}/file")
    assert response.status_code == 200
    features = json.loads(b"".join(response.streaming_content))["features"]
    assert {f["id"] for f in features} == {str(i) for i in built.record_ids}
    assert {f["properties"]["qualifier"] for f in features} == {"nuisance"}
    built_row, fetched = reads_logged(before)
    assert fetched.action == "disclosure" and fetched.record_ids == built_row.record_ids
    assert fetched.details == {"view": "api.exports.file", "export": export_id}
    assert [p.name for p in (media / "exports").rglob("*") if p.is_file()] == [f"{export_id}.geojson"]


def test_an_export_without_personal_data_logs_nothing_and_expires(tworld, media):
    from warden_app.models import Export
    from warden_app.services.exports import export_build, exports_expire

    export = Export.objects.create(owner=tworld.users["analyst"], record_type="observation", format="csv",
                                   query={"organisation": "wigan-council"})
    before = last_log_id()
    export = export_build(export_id=export.pk)
    assert export.status == "ready" and export.row_count == 3 and export.access_log_entry_id is None
    assert reads_logged(before) == []
    client = tworld.client("analyst")
    text = b"".join(client.get(f"/api/v1/exports/{export.pk}/file").streaming_content).decode()
    assert len(list(csv.DictReader(io.StringIO(text)))) == 3
    assert reads_logged(before) == []
    assert exports_expire(now=timezone.now() + timedelta(days=30)) == 1
    assert not list((media / "exports").rglob("*.csv"))
    assert client.get(f"/api/v1/exports/{export.pk}/file").status_code == 410


def test_an_owner_who_lost_the_role_gets_no_file(tworld):
    from warden_app.models import Export
    from warden_app.permissions import forget_cached_rights
    from warden_app.services.exports import export_build

    analyst = tworld.users["analyst"]
    export = Export.objects.create(owner=analyst, record_type="observation", format="geojson", query={})
    analyst.groups.clear()
    forget_cached_rights(analyst)
    with pytest.raises(PermissionError):
        export_build(export_id=export.pk)
    export.refresh_from_db()
    assert export.status == "failed" and not export.file_name


def bulk_observations(world, n: int) -> None:
    """n council observations in Leigh, written straight into the table (as years of pushes
    would have), with personal fields."""
    demo = world.demo
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO warden_app_observation (id, version, created_at, updated_at, form_id, author_id,
              organisation_id, review_state, qualifier, incident_type, observed_at, description, action_taken,
              persons_involved, location, accuracy_m, fix_source, photos)
            SELECT gen_random_uuid(), 1, now(), now(), %s, %s, %s, 'submitted', 'nuisance', 'noise', now(),
              'bulk ' || g, '{}', '[{"description": "someone"}]',
              ST_SetSRID(ST_MakePoint(%s + (g %% 100) * 0.00001, %s), 4326), 5, 'gps', '{}'
            FROM generate_series(1, %s) g
            """,
            [demo.forms["observation"].pk, demo.users["warden_leigh"].pk, demo.organisations["Wigan Council"].pk,
             IN_LEIGH[0], IN_LEIGH[1], n],
        )


def test_a_stream_of_many_chunks_is_whole_and_logged_whole(tworld):
    bulk_observations(tworld, 4500)  # three chunks of features
    before = last_log_id()
    response = tworld.client("supervisor_leigh").get(URL, {"format": "geojson", "incident_type": "noise"})
    features = json.loads(body_of(response))["features"]
    assert len(features) == 4501  # and the police PCSO's noise record
    [(_, _, logged, _)] = committed_log_rows(before)
    assert sorted(logged) == sorted(f["id"] for f in features)


def test_an_abandoned_large_stream_is_cancelled_at_once(tworld):
    bulk_observations(tworld, 20000)
    client = tworld.client("admin")
    client.get(URL)
    idle = backends()
    response = client.get(URL, {"format": "csv"})
    iterator = iter(response.streaming_content)
    assert next(iterator).startswith(b"id,version,organisation")
    next(iterator)
    started = time.monotonic()
    response.close()
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while backends() != idle and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backends() == idle


def test_streams_take_the_same_filters_bbox_and_polygon_included(tworld):
    from .test_records_api import SQUARE_WKT

    x, y = IN_LEIGH
    client = tworld.client("analyst")
    by_bbox = json.loads(body_of(client.get(URL, {"format": "geojson", "bbox": f"{x - 0.001},{y - 0.001},"
                                                                                f"{x + 0.001},{y + 0.001}"})))
    by_polygon = list(csv.DictReader(io.StringIO(body_of(client.post(
        URL, json.dumps({"format": "csv", "polygon": SQUARE_WKT, "qualifier": "nuisance"}),
        content_type="application/json")).decode())))
    expected = {tworld.records["council_leigh"], tworld.records["police_leigh"]}
    assert {f["id"] for f in by_bbox["features"]} == expected
    assert {row["id"] for row in by_polygon} == {tworld.records["police_leigh"]}
