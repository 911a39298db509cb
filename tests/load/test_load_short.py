"""CI-sized runs of bench/load.py's two profiles against a real server: gunicorn (the production
config, several workers), a Celery worker and a Redis of their own, on pytest-django's test
database (committed: `transactional_db`, so the server's processes see the world).

What is asserted is the audit: every mutation sent has exactly one receipt, no receipt lacks
a mutation, every record is there once with the values and versions its handheld gave it,
every photo is stored under its hash, and no answer was a 5xx. Latencies and drain times are
printed (`-s` shows them), never asserted: on a shared two-core machine they measure the
machine. `bench/load.py` runs the full sizes.
"""
from __future__ import annotations

import asyncio
import re
import threading
import time

import httpx
import psycopg
import pytest
from django.db import connection

from bench import loadkit
from tests.deploy.stack import child_database_url

pytestmark = pytest.mark.slow


@pytest.fixture
def start_server(transactional_db, tmp_path):
    """Starts the server (extra environment for it as keyword arguments); stops it after."""
    stacks = []

    def start(**env: str) -> loadkit.Stack:
        work_dir = tmp_path / f"stack{len(stacks)}"
        work_dir.mkdir()
        stack = loadkit.Stack(database_url=child_database_url("fieldsync-load"), workers=3, work_dir=work_dir,
                              env=env)
        stacks.append(stack)
        return stack.start()

    try:
        yield start
    finally:
        # Before transactional_db empties the tables: no child may hold a session then.
        for stack in stacks:
            stack.stop()


@pytest.fixture
def server(start_server):
    return start_server()


def assert_clean(result: loadkit.LoadReport) -> None:
    print("\n" + result.text)
    assert result.audit.passed, "\n".join(result.audit.failures)
    assert result.audit.lost == 0 and result.audit.undelivered == 0
    assert result.audit.duplicated == 0
    assert result.server_errors == 0, result.text


def test_steady_shift_short(server):
    profile = loadkit.steady_profile(
        devices=30, duration=20, push_every=(2.0, 5.0), changes=(1, 10), pull_every=8.0,
        offline_chance=0.1, offline=(3.0, 8.0), dup_chance=0.15, photo_chance=0.05, photo_px=(640, 480),
        enrol=3, drain_grace=60.0,
    )
    world = loadkit.world_prepare(devices=profile.devices, enrol=profile.enrol, areas=3)
    with connection.cursor() as c:
        c.execute("SELECT current_setting('autovacuum')::bool")
        autovacuum = c.fetchone()[0]
    result = loadkit.run_load(server.base_url, world, profile, media_root=server.media_root,
                              server=server.describe(), stack=server, vacuum_every=4.0)
    assert_clean(result)
    # Where the server's PostgreSQL has no autovacuum, a stand-in vacuumed the tables the
    # migrations tuned for it, during the shift, without holding pulls back.
    stand_in = re.search(r"a stand-in vacuumed (.+) every 4 s \((\d+) runs", result.text)
    if autovacuum:
        assert stand_in is None
    else:
        assert stand_in, result.text
        assert {"sync_change", "sync_device", "warden_app_observation"} <= set(stand_in[1].split(", "))
        assert int(stand_in[2]) >= 3
    # The run did what a shift does: enrolments, offline gaps, deliberate re-sends, offline
    # edits merged on a stale base, photos, pulls.
    run = result.run
    counters = run.kit.counters
    assert run.stats.outcomes["enrol"][201] == 3
    assert counters["offline gaps"] > 0
    assert counters["parallel re-sends"] + counters["re-sends after an answer"] > 0
    outcomes = {s.outcome for s in run.kit.ledger.sent.values()}
    assert outcomes == {"applied", "merged"}
    assert run.kit.ledger.photos and run.kit.pull_ops["upsert"] > 0


def test_morning_storm_short(server):
    from django.db.models import F, Value
    from django.db.models.functions import Concat

    from fieldsync.sync.models import Attachment, Receipt
    from warden_app.models import Observation

    profile = loadkit.storm_profile(devices=20, mutations=50, photos=2, photo_px=(640, 480), enrol=2,
                                    dup_chance=0.1, deadline=120.0)
    world = loadkit.world_prepare(devices=profile.devices, enrol=profile.enrol, areas=2)
    result = loadkit.run_load(server.base_url, world, profile, media_root=server.media_root,
                              server=server.describe(), stack=server)
    assert_clean(result)
    run = result.run
    assert len(run.kit.ledger.sent) == profile.devices * profile.mutations
    assert all(h.drained_at is not None for h in run.handhelds)
    assert len(run.kit.ledger.photos) == profile.devices * profile.photos

    # The audit is not vacuous: a create's receipt gone (its record then stands unexplained),
    # a value changed in another record and a photo gone are each found.
    ledger = run.kit.ledger
    first, second = list(ledger.by_record)[:2]
    Receipt.objects.filter(mutation_id=ledger.by_record[first][0]).delete()
    Observation.objects.filter(id=second).update(description=Concat(F("description"), Value(" (tampered)")))
    Attachment.objects.filter(sha256=next(iter(ledger.photos))).delete()
    failures = "\n".join(loadkit.audit(run, media_root=server.media_root).failures)
    assert "1 mutations sent without a receipt" in failures
    assert "records: 0 missing, 1 not made by any mutation sent" in failures
    assert "records not as their handhelds left them: 1 values, 0 versions" in failures
    assert "photos: 1 missing" in failures


def stall_receipts(after: float, hold: float) -> threading.Thread:
    """From `after` seconds on, hold for `hold` seconds a lock that stops every push before it
    writes its receipts (reads go on): a database stall in the middle of the shift."""
    url = child_database_url("load-test-stall")

    def run():
        time.sleep(after)
        with psycopg.connect(url) as conn:
            conn.execute("LOCK TABLE sync_receipt IN EXCLUSIVE MODE")
            time.sleep(hold)
            conn.rollback()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_handhelds_recover_from_throttling_and_a_stall(start_server):
    """A device rate of 2 requests a second (a round with a photo, push + HEAD + PUT, always
    meets a 429 with a Retry-After under a second) and a 3 s database stall that outlasts the
    push timeout: handhelds wait, re-send the same pushes while the first copies are still
    pending, and the store still ends exactly once."""
    server = start_server(SYNC_DEVICE_RATE="2/sec")
    profile = loadkit.steady_profile(
        devices=8, duration=12, push_every=(1.0, 2.0), changes=(1, 8), pull_every=3.0, offline_chance=0.0,
        dup_chance=0.1, photo_chance=0.3, photo_px=(320, 240), enrol=0, push_timeout=1.0, drain_grace=60.0,
    )
    world = loadkit.world_prepare(devices=profile.devices, enrol=0, areas=1)
    stall = stall_receipts(after=5.0, hold=3.0)
    result = loadkit.run_load(server.base_url, world, profile, media_root=server.media_root,
                              server=server.describe(), stack=server)
    stall.join(10)
    assert_clean(result)
    stats = result.run.stats
    throttled = sum(counts[429] for counts in stats.outcomes.values())
    assert throttled > 0, "the throttle never answered: Retry-After was not exercised"
    assert stats.outcomes["push"]["timeout"] > 0, "no push timed out: re-sends of pending pushes were not exercised"
    assert result.run.kit.net.retries > 0


def test_client_waits_out_retry_after_and_retries_timeouts():
    """The client's retry rules alone, against a scripted transport: a timeout, a 429 and a
    503 (each with Retry-After), then the answer; every wait at least what was asked."""
    script = [httpx.ReadTimeout("slow"), (429, "0.4"), (503, "0.3"), (200, None)]
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        step = script[len(seen) - 1]
        if isinstance(step, Exception):
            raise step
        status, retry_after = step
        return httpx.Response(status, headers={"Retry-After": retry_after} if retry_after else {}, json={})

    async def call():
        stats = loadkit.Stats()
        net = loadkit.Net("http://load.test", stats, transport=httpx.MockTransport(answer))
        try:
            response = await net.call("push", "POST", loadkit.PUSH, token="t", content=b"{}",
                                      content_type="application/json", timeout=5, until=time.monotonic() + 30,
                                      attempts=8, cap=1.0)
        finally:
            await net.close()
        return response, stats, net.retries

    response, stats, retries = asyncio.run(call())
    assert response is not None and response.status_code == 200
    assert retries == 3
    assert stats.outcomes["push"] == {"timeout": 1, 429: 1, 503: 1, 200: 1}
    assert seen[2] - seen[1] >= 0.4 and seen[3] - seen[2] >= 0.3
