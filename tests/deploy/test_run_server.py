"""deploy/local/run-server.sh, the foreground part of `make run`: the server, a Celery worker and
Celery beat start, the banner lists the README's URLs, and Ctrl-C (SIGINT to the terminal's
process group) stops all three, cleanly, with no traceback.

Run against the test database and the tests' own Redis (never make run's: settings), on a
free port, with beat's schedule in a temporary directory.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy/local/run-server.sh"
README = ROOT / "README.md"

pytestmark = [pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_run_server_starts_three_processes_and_stops_them_on_ctrl_c(django_db_setup, django_db_blocker, tmp_path):
    from fieldsync.celery import app

    with app.connection_for_write() as connection:  # nothing left over for this worker to run
        app.control.purge(connection=connection)
    port = free_port()
    env = {**os.environ, "PORT": str(port), "DATABASE_URL": database_url(), "DEBUG": "true",
           "FIELDSYNC_HTTPS": "false", "BEAT_SCHEDULE": str(tmp_path / "beat-schedule"),
           "ACCESS_LOG_ANCHOR": f"file://{tmp_path}/anchors.log"}
    env.pop("DATABASE_OWNER_URL", None)
    out_path = tmp_path / "out.log"
    with out_path.open("wb") as out:
        # A session of its own, as a terminal's foreground job has its process group; SIGINT
        # not ignored (a shell's background job would have it ignored, and bash keeps that).
        proc = subprocess.Popen(["bash", str(SCRIPT)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        text = ""
        while time.monotonic() < deadline:
            text = out_path.read_text(errors="replace")
            if "fieldsync is running" in text and re.search(r"celery@\S+ ready", text) and "beat: Starting" in text:
                break
            assert proc.poll() is None, text
            time.sleep(0.5)
        else:
            pytest.fail("run-server.sh did not come up:\n" + text)
        pids = [int(p) for p in re.search(r"server pid (\d+), worker pid (\d+), beat pid (\d+)", text).groups()]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200 and b"Sign in to fieldsync" in response.read()

        # The banner lists the README's URLs.
        for path in ("/", "/warden/", "/review/", "/analysis/", "/partner/", "/dpo/", "/admin/", "/api/docs/"):
            assert f"http://127.0.0.1:{port}{path} " in text, path
            assert f"http://127.0.0.1:8000{path}" in README.read_text(), path
        for username in ("warden_leigh", "pcso_leigh", "supervisor_leigh", "analyst", "partner_fire", "dpo", "admin"):
            assert username in text

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=40) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = out_path.read_text(errors="replace")
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in pids if alive(pid)], text
    assert "Warm shutdown" in text and "Shutting down: Master" in text and "[run-server] stopped" in text, text
    assert "Traceback" not in text, text
    assert "Cold shutdown" not in text, text
