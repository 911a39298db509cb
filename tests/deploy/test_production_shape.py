"""The production shape on loopback, and an app server lost in the middle of a sync round.

Two gunicorn instances (deploy/gunicorn.conf.py, two workers each) behind a real nginx running
deploy/nginx/fieldsync.conf (TLS with a self-signed certificate; only addresses and paths
swapped), a Celery worker, the real PostgreSQL (pytest-django's test database, committed by
`transactional_db`, so the processes see it) and a real Redis. The app processes run with the
production defaults (DEBUG off, FIELDSYNC_HTTPS on): they only work because nginx sends
X-Forwarded-Proto.

The Redis server is this test's own, on a free port: the Celery queue and the throttle
counters must not be shared with suites other engineers run at the same time.
"""
from __future__ import annotations

import hashlib
import io
import os
import queue
import re
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
from django.contrib.auth.hashers import make_password
from django.db import connection
from PIL import Image

from tests.sync.conftest import PASSWORD, audit_data, build_world, item_data, mutation, observation_data

from .stack import (
    DEPLOY,
    Processes,
    child_database_url,
    child_env,
    free_port,
    nginx_binary,
    redis_server_argv,
    render_site_conf,
    self_signed_cert,
    wait_until,
    write_nginx_conf,
)

pytestmark = pytest.mark.slow

BATCHES = 24  # pushes of 10 mutations: 4 observations created and edited, an audit, an item
PUSHERS = 3  # concurrent connections, so pushes are in flight on both app servers


class Stack:
    def __init__(self, tmp: Path, processes: Processes):
        self.tmp = tmp
        self.processes = processes
        self.ports = {name: free_port() for name in ("a", "b", "http", "https", "redis")}
        self.cert, self.key = self_signed_cert(tmp)
        self.static = tmp / "static"
        self.media = tmp / "media"
        self.media.mkdir()
        self.nginx_prefix = tmp / "nginx"

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['https']}"

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, verify=ssl.create_default_context(cafile=self.cert),
                            timeout=60, **kwargs)

    def env(self, application_name: str, **extra: str) -> dict[str, str]:
        # FIELDSYNC_HTTPS is not inherited either: the production default (on) is under test.
        return child_env(database_url=child_database_url(application_name), application_name=application_name,
                         redis_port=self.ports["redis"], media_root=self.media, drop=frozenset({"FIELDSYNC_HTTPS"}),
                         STATIC_ROOT=str(self.static), **extra)

    def log_tail(self, name: str) -> Callable[[], str]:
        """For wait_until: the end of a process's log, read when the wait fails."""
        return lambda: self.processes.log(name)[-3000:]

    def start(self) -> None:
        p = self.processes
        p.start("redis", redis_server_argv(self.ports["redis"], self.tmp), os.environ.copy())
        # collectstatic with the project's STORAGES, into the directory nginx serves.
        subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
                       cwd=DEPLOY.parent, env=self.env("collectstatic"), check=True, timeout=120)
        for name in ("a", "b"):
            p.start(f"gunicorn-{name}",
                    [sys.executable, "-m", "gunicorn", "-c", str(DEPLOY / "gunicorn.conf.py"),
                     "-w", "2", "fieldsync.wsgi"],
                    self.env(f"fieldsync-{name}", GUNICORN_BIND=f"127.0.0.1:{self.ports[name]}",
                             GUNICORN_ACCESS_LOG=str(self.tmp / f"gunicorn-{name}-access.log")))
        p.start("worker", [sys.executable, "-m", "celery", "-A", "fieldsync", "worker", "-l", "info",
                           "-c", "1", "-n", f"deploy-test-{uuid.uuid4().hex[:8]}@%h",
                           "--without-gossip", "--without-mingle"],
                self.env("fieldsync-worker"))
        site = render_site_conf(
            upstreams=[f"127.0.0.1:{self.ports['a']}", f"127.0.0.1:{self.ports['b']}"],
            http_port=self.ports["http"], https_port=self.ports["https"], cert=self.cert, key=self.key,
            static_root=self.static, log_dir=self.tmp / "nginx-logs",
        )
        conf = write_nginx_conf(self.nginx_prefix, site)
        p.start("nginx", [nginx_binary(), "-p", str(self.nginx_prefix), "-c", str(conf), "-g", "daemon off;"],
                os.environ.copy())

        for name in ("a", "b"):
            url = f"http://127.0.0.1:{self.ports[name]}/readyz"
            wait_until(lambda url=url: httpx.get(url, timeout=2).status_code == 200,
                       f"gunicorn {name} ready", 40, self.log_tail(f"gunicorn-{name}"))
        wait_until(lambda: self.client().get("/readyz").status_code == 200, "nginx", 20, self.log_tail("nginx"))
        wait_until(lambda: " ready." in p.log("worker"), "the Celery worker", 40, self.log_tail("worker"))

    def nginx_error_log(self) -> str:
        path = self.nginx_prefix / "logs" / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def nginx_access_log(self) -> list[str]:
        return (self.tmp / "nginx-logs" / "access.log").read_text().splitlines()


@pytest.fixture
def stack(transactional_db, tmp_path):
    processes = Processes(tmp_path)
    shape = Stack(tmp_path, processes)
    try:
        shape.start()
        yield shape
    finally:
        # Before transactional_db empties the tables: no child may hold a session then.
        processes.stop_all()


def outbox_batch(i: int) -> tuple[list[dict], list[uuid.UUID], list[uuid.UUID]]:
    mutations, observations, others = [], [], []
    for j in range(4):
        record = uuid.uuid4()
        observations.append(record)
        mutations.append(mutation("observation", "create", record, observation_data(description=f"{i}/{j}")))
        mutations.append(mutation("observation", "update", record, {"description": f"{i}/{j} edited"},
                                  base_version=1))
    audit, item = uuid.uuid4(), uuid.uuid4()
    others += [audit, item]
    mutations.append(mutation("street_audit", "create", audit, audit_data(title=f"walk {i}")))
    mutations.append(mutation("audit_item", "create", item, item_data(audit)))
    return mutations, observations, others


def waiting_sessions(application_name: str) -> int:
    """Sessions of one app server blocked on a lock, i.e. a push stopped mid-transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s AND wait_event_type = 'Lock'",
            [application_name],
        )
        return cursor.fetchone()[0]


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (40, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def test_a_sync_round_survives_losing_an_app_server(stack):
    from fieldsync.sync.models import Attachment, Conflict, QuarantinedMutation, Receipt, RecordVersion
    from warden_app.models import AuditItem, Observation, StreetAudit

    world = build_world()
    # The app servers run the production settings, whose hashers do not include the tests'
    # fast MD5 one: give the enrolling user a hash they can verify.
    world.users["warden"].password = make_password(PASSWORD, hasher="pbkdf2_sha256")
    world.users["warden"].save(update_fields=["password"])
    warden = world.users["warden"]
    with stack.client() as client:
        enrol = client.post("/api/v1/devices/enrol", json={"username": "warden", "password": PASSWORD,
                                                           "label": "Handheld 1", "platform": "test"})
    assert enrol.status_code == 201, enrol.text
    auth = {"Authorization": f"Bearer {enrol.json()['token']}"}

    batches, observations, others = [], [], []
    for i in range(BATCHES):
        batch, obs, rest = outbox_batch(i)
        batches.append(batch)
        observations += obs
        others += rest
    sent = [m["mutation_id"] for batch in batches for m in batch]

    todo: queue.Queue = queue.Queue()
    for batch in batches:
        todo.put(batch)
    results: dict[str, list[dict]] = {}
    failures: list[str] = []
    progress = {"done": 0}
    lock = threading.Lock()

    def pusher():
        with stack.client(headers=auth) as client:
            while True:
                try:
                    batch = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    response = client.post("/api/v1/sync/push", json={"mutations": batch})
                except httpx.HTTPError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                with lock:
                    if response.status_code != 200:
                        failures.append(f"{response.status_code}: {response.text[:300]}")
                        continue
                    for result in response.json()["results"]:
                        results.setdefault(result["mutation_id"], []).append(result)
                    progress["done"] += 1

    threads = [threading.Thread(target=pusher, daemon=True) for _ in range(PUSHERS)]
    for thread in threads:
        thread.start()
    wait_until(lambda: progress["done"] >= BATCHES // 3, "a third of the pushes", 60)

    # Hold every push mid-transaction (receipts cannot be written), until app server A has a
    # push in flight; then SIGKILL A's whole process group: master and both workers.
    holder = psycopg.connect(child_database_url("deploy-test-lock"))
    try:
        holder.execute("LOCK TABLE sync_receipt IN EXCLUSIVE MODE")
        wait_until(lambda: waiting_sessions("fieldsync-a") >= 1, "a push in flight on server A", 30)
        done_before_kill = progress["done"]
        stack.processes.kill_group("gunicorn-a")
        stack.processes.started["gunicorn-a"].wait(10)
        wait_until(lambda: not stack.processes.group_alive("gunicorn-a"), "server A gone", 10)
        # nginx sees the dropped connection (and resends the push to B, which proceeds once
        # the lock is gone).
        a_address = f"127.0.0.1:{stack.ports['a']}"
        wait_until(lambda: a_address in stack.nginx_error_log(), "nginx noticing server A's loss", 30)
    finally:
        holder.rollback()
        holder.close()
    for thread in threads:
        thread.join(90)
    assert not any(thread.is_alive() for thread in threads), "pushes never finished"
    assert done_before_kill < BATCHES, "the kill came after the round, not in the middle"

    # Every push answered 200 through nginx, every mutation answered exactly once.
    assert failures == []
    assert sorted(results) == sorted(sent)
    assert all(len(answers) == 1 for answers in results.values())
    assert {r["status"] for answers in results.values() for r in answers} <= {"applied", "duplicate"}
    # ...and stored exactly once: one receipt per mutation sent, every record once, no
    # conflict and nothing quarantined.
    assert Receipt.objects.filter(user=warden).count() == len(sent)
    assert Observation.objects.count() == len(observations)
    assert StreetAudit.objects.count() == BATCHES and AuditItem.objects.count() == BATCHES
    assert RecordVersion.objects.filter(record_type="observation").count() == 2 * len(observations)
    assert not Observation.objects.exclude(description__endswith=" edited").exists()
    assert Conflict.objects.count() == 0 and QuarantinedMutation.objects.count() == 0

    # The pull, through nginx and the surviving server, brings back every record.
    pulled, cursor = {}, None
    with stack.client(headers=auth) as client:
        for _ in range(50):
            page = client.get("/api/v1/sync/pull", params={"limit": 50, **({"cursor": cursor} if cursor else {})})
            assert page.status_code == 200, page.text
            body = page.json()
            for change in body["changes"]:
                pulled[change["id"]] = change
            cursor = body["cursor"]
            if not body["has_more"]:
                break
    assert set(pulled) == {str(r) for r in observations + others}
    assert all(change["op"] == "upsert" for change in pulled.values())
    assert all(pulled[str(r)]["data"]["description"].endswith(" edited") for r in observations)

    # The resend is in nginx's logs: pushes went to A, then to B.
    a, b = f"127.0.0.1:{stack.ports['a']}", f"127.0.0.1:{stack.ports['b']}"
    pushes = [line for line in stack.nginx_access_log() if "POST /api/v1/sync/push " in line]
    assert any(f"upstream={a}, {b} " in line and "upstream_status=502, 200 " in line for line in pushes), \
        "\n".join(pushes)
    # ...and at least one of them was in flight on A when A died (not merely refused later).
    in_flight = re.compile(r"(upstream prematurely closed connection|recv\(\) failed).*"
                           rf'"POST /api/v1/sync/push HTTP/1\.1", upstream: "http://{re.escape(a)}/')
    assert in_flight.search(stack.nginx_error_log()), stack.nginx_error_log()
    # Both servers served pushes before the kill.
    for name in ("a", "b"):
        served = (stack.tmp / f"gunicorn-{name}-access.log").read_text()
        assert re.search(r'"POST /api/v1/sync/push HTTP/1\.1" 200 ', served), name

    # The worker: a photo uploaded through nginx gets its thumbnail from the Celery worker.
    photo = png_bytes()
    address = hashlib.sha256(photo).hexdigest()
    with stack.client(headers=auth) as client:
        upload = client.put(f"/api/v1/attachments/{address}", content=photo, headers={"Content-Type": "image/png"})
    assert upload.status_code == 201, upload.text
    wait_until(lambda: bool(Attachment.objects.get(sha256=address).thumbnail), "the thumbnail", 30,
               stack.log_tail("worker"))
    assert (stack.media / Attachment.objects.get(sha256=address).thumbnail.name).is_file()


def test_nginx_edge_behaviour(stack):
    """Static files from nginx, security headers once each, http redirected to https, and a
    body over 10m refused by nginx with the protocol's error body."""
    with stack.client() as client:
        static = client.get("/static/admin/css/base.css")
        assert static.status_code == 200
        assert static.content == (stack.static / "admin" / "css" / "base.css").read_bytes()
        assert static.headers["cache-control"] == "max-age=3600"
        proxied = client.get("/healthz")
        assert proxied.status_code == 200 and proxied.json() == {"status": "ok"}
        for response in (static, proxied):
            assert response.headers.get_list("strict-transport-security") == [
                "max-age=31536000; includeSubDomains; preload"]
            assert response.headers.get_list("x-content-type-options") == ["nosniff"]
            assert response.headers.get_list("x-frame-options") == ["DENY"]
            assert response.headers.get_list("referrer-policy") == ["same-origin"]
            assert "server" not in response.headers or "nginx/" not in response.headers["server"]
        # Django sees https (X-Forwarded-Proto), so the production settings do not redirect.
        manifest = client.get("/api/v1/sync/manifest")
        assert manifest.status_code == 401, manifest.text
        too_big = client.put("/api/v1/attachments/" + "0" * 64, content=b"\0" * (10 * 1024 * 1024 + 1),
                             headers={"Content-Type": "image/png"})
        assert too_big.status_code == 413
        assert too_big.json()["code"] == "too_large"
    plain = httpx.get(f"http://127.0.0.1:{stack.ports['http']}/api/v1/sync/manifest", follow_redirects=False)
    assert plain.status_code == 301
    assert plain.headers["location"] == "https://127.0.0.1/api/v1/sync/manifest"
