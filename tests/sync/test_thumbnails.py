"""Thumbnails: made by a real Celery worker (another process) from a task queued on the
real Redis broker after the upload commits; and made later by the periodic catch-up
when the broker was down at upload time. Nothing mocked."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from django.conf import settings as django_settings
from PIL import Image

from fieldsync.celery import app
from fieldsync.sync.models import Attachment
from fieldsync.sync.tasks import THUMBNAIL_SIZE, attachment_thumbnail, thumbnails_catch_up

from .conftest import mutation, observation_data
from .test_attachments import CLOSED_PORT, celery_redis, jpeg_with_gps, png_with_location_text, put, sha

VENV_BIN = Path(sys.executable).parent


def assert_thumbnail(row: Attachment, media: Path) -> None:
    assert row.thumbnail.name, "no thumbnail recorded"
    path = Path(row.thumbnail.path)
    assert path.is_relative_to(media) and path.is_file()
    image = Image.open(path)
    assert image.format == "JPEG"
    assert max(image.size) <= THUMBNAIL_SIZE[0] and max(image.size) == THUMBNAIL_SIZE[0]


def wait_for_thumbnail(address: str, timeout: float = 30.0) -> Attachment:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = Attachment.objects.get(sha256=address)
        if row.thumbnail:
            return row
        time.sleep(0.2)
    raise AssertionError(f"no thumbnail for {address} after {timeout:.0f} s")


def worker_database_url() -> str:
    """DATABASE_URL naming the test database this test runs against."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    name = django_settings.DATABASES["default"]["NAME"]
    return urlunsplit(parts._replace(path="/" + quote(name)))


@pytest.fixture
def thumbnail_queue(monkeypatch):
    """A queue of this test's own on the shared broker, so no other worker takes our task
    and our worker takes no one else's. Task.queue is Celery's per-task routing."""
    queue = f"fieldsync-test-thumbnails-{uuid.uuid4().hex[:12]}"
    monkeypatch.setattr(attachment_thumbnail, "queue", queue, raising=False)
    monkeypatch.setattr(attachment_thumbnail, "_exec_options", None)
    yield queue
    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        keys = [key for pattern in (f"{queue}*", f"_kombu.binding.{queue}*", f"_kombu.binding_permanent.{queue}*")
                for key in client.scan_iter(match=pattern)]
        if keys:
            client.delete(*keys)


@pytest.fixture
def worker(tworld, media, thumbnail_queue, tmp_path):
    """A real `celery worker` process on the test database and the test's MEDIA_ROOT."""
    env = {
        **os.environ,
        "DATABASE_URL": worker_database_url(),
        "MEDIA_ROOT": str(media),
        "FIELDSYNC_HTTPS": "false",
        "DJANGO_SETTINGS_MODULE": "fieldsync.settings",
    }
    env.pop("DEBUG", None)
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [str(VENV_BIN / "celery"), "-A", "fieldsync", "worker", "-l", "warning", "--pool=solo",
         "--concurrency=1", "-Q", thumbnail_queue, "-n", f"{thumbnail_queue}@%h",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=django_settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)  # warm shutdown
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def test_worker_makes_the_thumbnail_after_commit(tworld, worker, media, tmp_path):
    handheld = tworld.enrol("warden")
    data = jpeg_with_gps((1200, 900))
    response = put(handheld, data, "image/jpeg")
    assert response.status_code == 201, response.content
    try:
        row = wait_for_thumbnail(sha(data))
    except AssertionError:
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
        raise AssertionError((tmp_path / "worker.log").read_text()) from None
    assert_thumbnail(row, media)
    assert Image.open(row.thumbnail.path).size == (320, 240)
    assert worker.poll() is None  # still running: the fixture stops it


def test_worker_thumbnail_of_a_transparent_png(tworld, worker, media, tmp_path):
    handheld = tworld.enrol("warden")
    data = png_with_location_text((640, 400))
    assert put(handheld, data, "image/png").status_code == 201
    row = wait_for_thumbnail(sha(data))
    assert_thumbnail(row, media)
    assert Image.open(row.thumbnail.path).size == (320, 200)


def test_broker_down_upload_still_works_and_catch_up_makes_the_thumbnail(tworld, media):
    handheld = tworld.enrol("warden")
    data = jpeg_with_gps((800, 600))
    address = sha(data)
    with celery_redis(CLOSED_PORT):
        started = time.monotonic()
        response = put(handheld, data, "image/jpeg")
        elapsed = time.monotonic() - started
        assert response.status_code == 201, response.content
        assert elapsed < 5, f"upload took {elapsed:.1f} s with the broker down"
        # Sync keeps working: the record naming the photo, and a pull.
        result = handheld.push_one(mutation("observation", "create", uuid.uuid4(),
                                            observation_data(photos=[address])))
        assert result["status"] == "applied", result
        handheld.pull_all()
        status = handheld.get("/api/v1/sync/status").json()
        assert status["missing_attachments"] == []

    row = Attachment.objects.get(sha256=address)
    assert not row.thumbnail  # the task was never queued
    assert thumbnails_catch_up() == 1
    row.refresh_from_db()
    assert_thumbnail(row, media)
    assert Image.open(row.thumbnail.path).size == (320, 240)
    assert thumbnails_catch_up() == 0  # nothing left to do, nothing made twice


def test_catch_up_skips_a_broken_photo_and_makes_the_others(world, media):
    handheld = world.enrol("warden")
    broken, good = jpeg_with_gps((400, 300)), jpeg_with_gps((500, 300))
    assert put(handheld, broken, "image/jpeg").status_code == 201
    assert put(handheld, good, "image/jpeg").status_code == 201
    Path(Attachment.objects.get(sha256=sha(broken)).file.path).write_bytes(b"not an image any more")

    assert thumbnails_catch_up() == 1
    assert_thumbnail(Attachment.objects.get(sha256=sha(good)), media)
    assert not Attachment.objects.get(sha256=sha(broken)).thumbnail
    thumbnails = list((media / "thumbnails").rglob("*"))
    assert [p for p in thumbnails if p.is_file()] == [Path(Attachment.objects.get(sha256=sha(good)).thumbnail.path)]


def test_thumbnail_made_twice_keeps_one_file(world, media):
    handheld = world.enrol("warden")
    data = jpeg_with_gps((400, 300))
    assert put(handheld, data, "image/jpeg").status_code == 201
    assert attachment_thumbnail(sha(data)) is True
    assert attachment_thumbnail(sha(data)) is False  # already made: nothing written
    files = [p for p in (media / "thumbnails").rglob("*") if p.is_file()]
    assert files == [Path(Attachment.objects.get().thumbnail.path)]


def test_beat_runs_the_catch_up_every_five_minutes():
    import fieldsync.sync.tasks  # noqa: F401 - registers the tasks, as the worker's autodiscovery does

    entries = [e for e in app.conf.beat_schedule.values()
               if e["task"] == "fieldsync.sync.tasks.thumbnails_catch_up"]
    assert len(entries) == 1
    schedule = entries[0]["schedule"]
    seconds = schedule if isinstance(schedule, (int, float)) else schedule.run_every.total_seconds()
    assert seconds == 300
    assert "fieldsync.sync.tasks.thumbnails_catch_up" in app.tasks


def test_the_thumbnail_task_refuses_a_stored_photo_over_the_memory_limit(world, media, settings):
    """The task decodes through the upload's guard: a stored file whose header declares
    more than the limit (here: the limit lowered after upload) is not decoded, gets no
    thumbnail, and does not stop the catch-up."""
    handheld = world.enrol("warden")
    big, small = jpeg_with_gps((1200, 900)), jpeg_with_gps((400, 300))
    assert put(handheld, big, "image/jpeg").status_code == 201
    assert put(handheld, small, "image/jpeg").status_code == 201
    settings.SYNC_MAX_IMAGE_MEMORY_BYTES = 1200 * 900 * 8 - 1
    assert attachment_thumbnail(sha(big)) is False
    assert not Attachment.objects.get(sha256=sha(big)).thumbnail
    assert thumbnails_catch_up() == 1
    assert_thumbnail(Attachment.objects.get(sha256=sha(small)), media)
