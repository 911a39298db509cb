"""Slow clients are absorbed by nginx, not by app workers (deploy/nginx/fieldsync.conf,
proxy_request_buffering on): handhelds on a bad signal that trickle a push byte by byte
hold an nginx connection each, and no gunicorn worker until their body is whole, so
/healthz through nginx keeps answering at once.

The production shape of test_production_shape.py (nginx with TLS, two gunicorns of two
sync workers each), on loopback. More trickling pushes than there are workers; the same
trickle sent straight to one gunicorn stalls its /healthz, which is what nginx prevents.
Every loop is bounded in time.
"""
from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import uuid

import httpx
import pytest
from django.contrib.auth.hashers import make_password

from tests.sync.conftest import PASSWORD, build_world, mutation, observation_data

from .test_production_shape import stack  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

TRICKLERS = 6  # more than the stack's four sync workers
BYTE_EVERY_S = 0.05
PROMPT_S = 1.0  # what "at once" means for /healthz on loopback


class Trickle(threading.Thread):
    """A push sent one byte at a time until told to finish; then the rest, then the answer."""

    def __init__(self, connect, host: str, token: str, extra: str = ""):
        super().__init__(daemon=True)
        self.connect, self.host = connect, host
        body = json.dumps({"mutations": [mutation("observation", "create", uuid.uuid4(), observation_data())]})
        self.body = body.encode()
        self.head = (f"POST /api/v1/sync/push HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\n"
                     f"{extra}Connection: close\r\n\r\n").encode()
        self.finish = threading.Event()
        self.sent = 0
        self.answer = b""
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.connect() as sock:
                sock.settimeout(60)
                sock.sendall(self.head)
                # Leave the last bytes out, whatever happens: the body is never whole before finish.
                while not self.finish.is_set() and self.sent < len(self.body) - 10:
                    sock.sendall(self.body[self.sent:self.sent + 1])
                    self.sent += 1
                    time.sleep(BYTE_EVERY_S)
                sock.sendall(self.body[self.sent:])
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
                self.answer = b"".join(chunks)
        except BaseException as exc:  # reported by the test
            self.error = exc

    @property
    def status(self) -> int | None:
        line = self.answer.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 else None


def enrolled_token(stack) -> str:  # noqa: F811 - the fixture's value
    world = build_world()
    # The app servers' production hashers do not include the tests' fast MD5 one.
    world.users["warden"].password = make_password(PASSWORD, hasher="pbkdf2_sha256")
    world.users["warden"].save(update_fields=["password"])
    with stack.client() as client:
        enrol = client.post("/api/v1/devices/enrol", json={"username": "warden", "password": PASSWORD,
                                                           "label": "Handheld 1", "platform": "test"})
    assert enrol.status_code == 201, enrol.text
    return enrol.json()["token"]


def healthz_seconds(get) -> float:
    started = time.monotonic()
    response = get()
    assert response.status_code == 200, response.text
    return time.monotonic() - started


def test_trickling_pushes_do_not_stall_healthz_behind_nginx(stack):  # noqa: F811
    token = enrolled_token(stack)
    https = stack.ports["https"]
    context = ssl.create_default_context(cafile=stack.cert)

    def through_nginx():
        raw = socket.create_connection(("127.0.0.1", https), timeout=10)
        return context.wrap_socket(raw, server_hostname="localhost")

    trickles = [Trickle(through_nginx, "localhost", token) for _ in range(TRICKLERS)]
    for trickle in trickles:
        trickle.start()
    try:
        deadline = time.monotonic() + 10
        while min(t.sent for t in trickles) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert min(t.sent for t in trickles) >= 20, [t.error for t in trickles]
        with stack.client() as client:
            answers = [healthz_seconds(lambda: client.get("/healthz")) for _ in range(10)]
        assert max(answers) < PROMPT_S, answers
        # Still trickling all along: no body was whole, none reached an app server.
        assert all(t.is_alive() and t.sent < len(t.body) - 10 for t in trickles)
        pushes = [(stack.tmp / f"gunicorn-{name}-access.log").read_text() for name in ("a", "b")]
        assert not any("POST /api/v1/sync/push" in log for log in pushes)
    finally:
        for trickle in trickles:
            trickle.finish.set()
        for trickle in trickles:
            trickle.join(60)
    # nginx handed each body on once whole: every push answered and applied.
    assert [t.error for t in trickles] == [None] * TRICKLERS
    assert [t.status for t in trickles] == [200] * TRICKLERS, [t.answer[:300] for t in trickles]
    for trickle in trickles:
        body = json.loads(trickle.answer.split(b"\r\n\r\n", 1)[1])
        assert [r["status"] for r in body["results"]] == ["applied"]

    # Without nginx in front: two trickles hold both workers of server A, and its /healthz waits.
    # (X-Forwarded-Proto as nginx sends it, or the production settings redirect to https at once.)
    a = stack.ports["a"]
    direct = [Trickle(lambda: socket.create_connection(("127.0.0.1", a), timeout=10), f"127.0.0.1:{a}", token,
                      extra="X-Forwarded-Proto: https\r\n") for _ in range(2)]
    for trickle in direct:
        trickle.start()
    try:
        time.sleep(1)
        with pytest.raises(httpx.TimeoutException):
            httpx.get(f"http://127.0.0.1:{a}/healthz", timeout=3)
    finally:
        for trickle in direct:
            trickle.finish.set()
        for trickle in direct:
            trickle.join(60)
    assert [t.status for t in direct] == [200, 200], [t.answer[:300] for t in direct]
    assert httpx.get(f"http://127.0.0.1:{a}/healthz", timeout=5).status_code == 200
