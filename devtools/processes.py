"""Processes of one's own for the tests and the benches: free ports, the environment a
child server gets (the production defaults, this run's database under its own application
name), a Redis of one's own, and process groups that are always stopped by whoever started
them. Not shipped (the image holds fieldsync and warden_app only); bench/ and tests/ both use
it, so neither imports the other."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx
import psycopg
import redis

BASE_DIR = Path(__file__).resolve().parents[1]
SYSTEM_HINT = "deploy/local/ensure-system.sh installs it (make test runs it)"
# Variables of a test run or a developer's shell that must not reach the children: they would
# relax the production defaults, or point the children at what belongs to the test run rather
# than to the test.
NOT_INHERITED = frozenset({
    "DEBUG", "DATABASE_TEST_NAME", "DATABASE_REPLICA_URL", "SECURE_HSTS_SECONDS", "ALLOWED_HOSTS",
    "DJANGO_ALLOW_ASYNC_UNSAFE", "CELERY_TASK_ALWAYS_EAGER", "PYTEST_CURRENT_TEST", "FIELDSYNC_URLCONF",
    "CACHE_KEY_PREFIX",
})


def child_database_url(application_name: str) -> str:
    """DATABASE_URL of the test database this test runs on, for child processes (the data must
    be committed: transactional_db). application_name tells their sessions apart."""
    from django.db import connection

    s = connection.settings_dict
    credentials = quote(s["USER"]) + (f":{quote(s['PASSWORD'])}" if s["PASSWORD"] else "")
    host = f"{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}"
    return f"postgres://{credentials}@{host}/{quote(s['NAME'])}?application_name={application_name}"


def with_application_name(url: str, name: str) -> str:
    """The same database URL; application_name tells the sessions of each process apart in
    pg_stat_activity."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | {"application_name": name}
    return urlunsplit(parts._replace(query=urlencode(query)))


def child_env(*, database_url: str, application_name: str, redis_port: int, media_root: Path,
              drop: frozenset[str] = frozenset(), **extra: str) -> dict[str, str]:
    """The environment of an app server or Celery process: ours without NOT_INHERITED (nor
    `drop`), the production settings on `database_url`, the Redis on `redis_port` as broker,
    result store and cache, photos on local disk under `media_root`, then `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED | drop}
    redis_base = f"redis://127.0.0.1:{redis_port}"
    env.update(
        DJANGO_SETTINGS_MODULE="fieldsync.settings",
        DATABASE_URL=with_application_name(database_url, application_name),
        REDIS_URL=f"{redis_base}/0",
        CELERY_BROKER_URL=f"{redis_base}/0",
        CELERY_RESULT_BACKEND=f"{redis_base}/0",
        REDIS_CACHE_URL=f"{redis_base}/1",
        MEDIA_ROOT=str(media_root),
        FIELDSYNC_STORAGE="filesystem",
        **extra,
    )
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], object], what: str, timeout: float,
               detail: Callable[[], str] = lambda: "") -> None:
    """Poll `check` until it is true; connection errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError, psycopg.Error, redis.RedisError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s\n{detail()}")
        time.sleep(0.1)


def redis_server_argv(port: int, directory: Path) -> list[str]:
    """A redis-server of one's own on loopback: queues and throttle counters shared with no
    other run; nothing is saved, so a restart starts it empty."""
    found = shutil.which("redis-server")
    assert found, f"redis-server is not installed: {SYSTEM_HINT}"
    return [found, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(directory)]


def proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat fields after the command name ([0] state, [1] ppid, [2] process
    group, [11] utime, [12] stime, [13] cutime, [14] cstime), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def live_processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, proc_stat fields) of every live (not zombie) process."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := proc_stat(int(entry.name))) is not None and fields[0] != "Z":
            yield int(entry.name), fields


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group."""
    return [pid for pid, fields in live_processes() if int(fields[2]) == pgid]


class Processes:
    """Processes a test started, each in its own session (process group), so a group can be
    killed as one: a gunicorn master together with its workers."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = (self.log_dir / f"{name}.log").open("wb")
        process = subprocess.Popen(argv, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        log.close()  # the child holds its own descriptor
        self.started[name] = process
        return process

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill_group(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.started[name].pid, sig)

    def group_alive(self, name: str) -> bool:
        """Some member of the group still runs (zombies waiting to be reaped do not count)."""
        return bool(group_members(self.started[name].pid))

    def stop_all(self) -> None:
        """TERM every group (graceful), then KILL each group that is not gone within seconds,
        orphaned members (workers whose master died first) included."""
        for name in self.started:
            self.kill_group(name, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while any(self.group_alive(name) for name in self.started) and time.monotonic() < deadline:
            time.sleep(0.05)
        for name, process in self.started.items():
            if self.group_alive(name):
                self.kill_group(name, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
