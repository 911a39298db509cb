"""Redis down: field staff keep syncing, and the thumbnails it could not queue are made later.

gunicorn and a Celery worker run against a redis-server of this test's own (broker, result
store and the cache that holds throttle counters). The test proves each is really in use while
Redis is up (a throttled device, a thumbnail made by the worker), kills that Redis, and checks
that pushes, pulls and photo uploads still work (throttling fails open; a thumbnail that cannot
be queued does not fail its upload). With Redis back, the catch-up task, queued as an operator
would, makes the missing thumbnails.
"""
from __future__ import annotations

import hashlib
import io
import time
import uuid

import pytest
from PIL import Image

from tests.sync.conftest import mutation, observation_data

from .support import HttpHandheld, wait_until

# A hang fails in two minutes, not the suite's ten; pytest-timeout (SIGALRM) fails the test where it
# stands, so the fixtures still stop every process.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

RATE = 6  # SYNC_DEVICE_RATE per minute: low, so throttling shows within a few requests
UPLOAD_LIMIT_S = 5.0  # what "keeps working" allows an upload while the broker is away


def jpeg(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (800, 600), color).save(out, format="JPEG", quality=90)
    return out.getvalue()


def upload(handheld: HttpHandheld, data: bytes) -> tuple[int, float]:
    started = time.monotonic()
    response = handheld.http.put(f"/api/v1/attachments/{hashlib.sha256(data).hexdigest()}", content=data,
                                 headers={"Content-Type": "image/jpeg"})
    return response.status_code, time.monotonic() - started


def thumbnail_of(check_db, data: bytes) -> str:
    (name,) = check_db.execute("SELECT thumbnail FROM sync_attachment WHERE sha256 = %s",
                               [hashlib.sha256(data).hexdigest()]).fetchone()
    return name


def assert_thumbnail_file(stack, name: str) -> None:
    image = Image.open(stack.media / name)
    assert image.format == "JPEG" and image.size == (320, 240), (image.format, image.size)


def test_redis_down_sync_goes_on_and_the_thumbnails_catch_up(world, stack, check_db):
    stack.start_gunicorn(workers=2, SYNC_DEVICE_RATE=f"{RATE}/min")
    stack.start_worker()
    handheld = HttpHandheld.enrol(stack.base_url, "warden", "Handheld 1")
    throttled = HttpHandheld.enrol(stack.base_url, "warden2", "Handheld 2")

    # Redis up: the device limit is enforced through it...
    codes = [throttled.http.get("/api/v1/sync/status").status_code for _ in range(RATE + 1)]
    assert codes == [200] * RATE + [429], codes
    # ...and a photo's thumbnail is queued on it and made by the worker.
    before = jpeg((200, 40, 40))
    assert upload(handheld, before)[0] == 201
    wait_until(lambda: thumbnail_of(check_db, before), "the worker's thumbnail with Redis up", 30,
               lambda: stack.processes.log("worker")[-3000:])

    stack.stop_redis()
    # Ready all the same: the broker is reported, never required.
    ready = handheld.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["broker"].startswith("error"), ready.json()
    # Throttling fails open: the device refused a moment ago is let through.
    assert [throttled.http.get("/api/v1/sync/status").status_code for _ in range(3)] == [200] * 3

    photos = [jpeg((40, 160, 40)), jpeg((40, 40, 200))]
    addresses = [hashlib.sha256(p).hexdigest() for p in photos]
    for photo in photos:
        status, took = upload(handheld, photo)
        assert status == 201 and took < UPLOAD_LIMIT_S, (status, took)
    assert handheld.http.head(f"/api/v1/attachments/{addresses[0]}").status_code == 200
    records = [uuid.uuid4(), uuid.uuid4()]
    push = handheld.push([mutation("observation", "create", record, observation_data(photos=[address]))
                          for record, address in zip(records, addresses, strict=True)])
    assert push.status_code == 200, push.text
    assert [r["status"] for r in push.json()["results"]] == ["applied", "applied"]
    page = handheld.pull_page()
    assert page.status_code == 200, page.text
    handheld.apply_page(page.json())
    assert {str(r) for r in records} <= set(handheld.store)
    status = handheld.http.get("/api/v1/sync/status")
    assert status.status_code == 200 and status.json()["missing_attachments"] == [], status.text
    assert [thumbnail_of(check_db, p) for p in photos] == ["", ""]

    stack.start_redis()  # empty: whatever was queued before is gone, as after a real loss
    # Uploads queue their thumbnails again once Redis is back (the app reconnects by itself,
    # and so does the worker)...
    after = jpeg((120, 120, 0))
    assert upload(handheld, after)[0] == 201
    wait_until(lambda: thumbnail_of(check_db, after), "the worker's thumbnail with Redis back", 40,
               lambda: stack.processes.log("worker")[-3000:])
    # ...but nothing made the two from the outage: their tasks were never queued.
    assert [thumbnail_of(check_db, p) for p in photos] == ["", ""]

    stack.celery_call("fieldsync.sync.tasks.thumbnails_catch_up")
    wait_until(lambda: all(thumbnail_of(check_db, p) for p in photos), "the catch-up's thumbnails", 30,
               lambda: stack.processes.log("worker")[-3000:])
    for data in (before, *photos, after):
        assert_thumbnail_file(stack, thumbnail_of(check_db, data))
    handheld.close()
    throttled.close()
