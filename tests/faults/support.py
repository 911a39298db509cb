"""Real processes for the fault tests, each stopped by the test that started it, also when
the test fails: a private Redis per test, gunicorn running deploy/gunicorn.conf.py, a Celery
worker, a private PostgreSQL cluster, and a handheld speaking the protocol over real HTTP.

The children run the production settings except FIELDSYNC_HTTPS=false: no TLS proxy stands in
front of them here (tests/deploy covers that edge); these tests are about what happens behind it.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
import psycopg
import redis

from tests.deploy.stack import (
    BASE_DIR,
    DEPLOY,
    SYSTEM_HINT,
    Processes,
    child_env,
    free_port,
    group_members,
    redis_server_argv,
    wait_until,
)
from tests.error_shape import field_errors_ok
from tests.sync.conftest import PASSWORD, audit_data, item_data, mutation, observation_data

PG_MAJOR = os.environ.get("PG_MAJOR") or "15"
PG_BINDIR = Path(os.environ.get("PG_BINDIR") or f"/usr/lib/postgresql/{PG_MAJOR}/bin")
RECORD_TABLES = ("warden_app_observation", "warden_app_streetaudit", "warden_app_audititem")
PROTOCOL_ERROR_KEYS = {"code", "message", "fields"}


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def is_protocol_error(response: httpx.Response) -> bool:
    """The protocol's one error shape: a JSON object with code, message and fields."""
    try:
        body = response.json()
    except ValueError:
        return False
    return (isinstance(body, dict) and body.keys() >= PROTOCOL_ERROR_KEYS and isinstance(body["code"], str)
            and isinstance(body["message"], str) and field_errors_ok(body["fields"]))


class Stack:
    """One test's server side: its own Redis on a free port (so its queue and throttle counters
    are shared with no other suite running at the same time), gunicorn on `database_url`, and
    a Celery worker when the test wants one."""

    def __init__(self, tmp: Path, database_url: str):
        self.tmp = tmp
        self.database_url = database_url
        self.processes = Processes(tmp)
        self.redis_port = free_port()
        self.app_port = free_port()
        self.media = tmp / "media"
        self.media.mkdir()
        self._redis_runs = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    def env(self, application_name: str, **extra: str) -> dict[str, str]:
        return child_env(database_url=self.database_url, application_name=application_name,
                         redis_port=self.redis_port, media_root=self.media, FIELDSYNC_HTTPS="false", **extra)

    # --- Redis ---------------------------------------------------------------------------

    def redis_ping(self) -> bool:
        with redis.Redis(port=self.redis_port, socket_timeout=1, socket_connect_timeout=1) as client:
            return bool(client.ping())

    def start_redis(self) -> None:
        """Start (or start again, on the same port) this test's redis-server, empty."""
        self._redis_runs += 1
        name = f"redis-{self._redis_runs}"
        self.processes.start(name, redis_server_argv(self.redis_port, self.tmp), os.environ.copy())
        wait_until(self.redis_ping, f"redis-server on port {self.redis_port}", 10,
                   lambda: self.processes.log(name))

    def stop_redis(self) -> None:
        """SIGKILL, like a crashed or unplugged Redis: every connection drops, nothing is saved."""
        name = f"redis-{self._redis_runs}"
        self.processes.kill_group(name)
        self.processes.started[name].wait(10)
        wait_until(lambda: not port_open(self.redis_port), "redis-server gone", 10)

    # --- app server and worker -------------------------------------------------------------

    def start_gunicorn(self, workers: int = 2, **extra_env: str) -> None:
        env = self.env("fieldsync-app", GUNICORN_BIND=f"127.0.0.1:{self.app_port}", GUNICORN_WORKERS=str(workers),
                       GUNICORN_ACCESS_LOG=str(self.tmp / "gunicorn-access.log"), **extra_env)
        self.processes.start("gunicorn", [sys.executable, "-m", "gunicorn", "-c", str(DEPLOY / "gunicorn.conf.py"),
                                          "fieldsync.wsgi"], env)
        # Every worker booted, and one of them answers readiness (which needs the database).
        wait_until(lambda: len(self.gunicorn_workers()) == workers, f"{workers} gunicorn workers", 40,
                   lambda: self.processes.log("gunicorn")[-3000:])
        wait_until(lambda: httpx.get(f"{self.base_url}/readyz", timeout=5).status_code == 200, "gunicorn ready", 40,
                   lambda: self.processes.log("gunicorn")[-3000:])

    def gunicorn_master(self) -> int:
        return self.processes.started["gunicorn"].pid

    def gunicorn_workers(self) -> list[int]:
        """The master's live children: the workers."""
        master = self.gunicorn_master()
        workers = []
        for pid in group_members(master):
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                    workers.append(pid)
        return workers

    def start_worker(self) -> None:
        # solo pool: one process, so the log and the reconnection after a broker loss are its own.
        self.processes.start("worker", [sys.executable, "-m", "celery", "-A", "fieldsync", "worker", "-l", "info",
                                        "--pool=solo", "-n", f"faults-{uuid.uuid4().hex[:8]}@%h",
                                        "--without-gossip", "--without-mingle", "--without-heartbeat"],
                             self.env("fieldsync-worker"))
        wait_until(lambda: " ready." in self.processes.log("worker"), "the Celery worker", 40,
                   lambda: self.processes.log("worker")[-3000:])

    def celery_call(self, task: str) -> None:
        """Queue a task the way an operator would (`celery call`), through this test's Redis."""
        result = subprocess.run([sys.executable, "-m", "celery", "-A", "fieldsync", "call", task], cwd=BASE_DIR,
                                env=self.env("fieldsync-call"), capture_output=True, text=True, timeout=60,
                                check=False)
        assert result.returncode == 0, result.stdout + result.stderr

    def stop_all(self) -> None:
        self.processes.stop_all()


@contextlib.contextmanager
def seeded_stack(tmp_path: Path, database_url: str, *, workers: int):
    """A Stack on `database_url` with its own Redis, the fault tests' world seeded by a child
    process, and gunicorn serving it; everything stopped afterwards, before a cluster that
    a caller's fixture tears down."""
    stack = Stack(tmp_path, database_url)
    try:
        stack.start_redis()
        seed = subprocess.run([sys.executable, "-m", "tests.faults.seed_world"], cwd=BASE_DIR,
                              env=stack.env("fieldsync-seed"), capture_output=True, text=True, timeout=120,
                              check=False)
        assert seed.returncode == 0, seed.stdout + seed.stderr
        stack.start_gunicorn(workers=workers)
        yield stack
    finally:
        stack.stop_all()


class PrivateCluster:
    """A throwaway PostGIS cluster, made the way deploy/local/ensure-db.sh makes its own:
    initdb as user postgres when we are root (initdb refuses root), trust authentication,
    listening only on 127.0.0.1 and a private socket directory."""

    def __init__(self) -> None:
        for tool in ("initdb", "pg_ctl"):
            assert (PG_BINDIR / tool).exists(), (
                f"no {PG_BINDIR / tool}: the PostgreSQL {PG_MAJOR} server is not installed; {SYSTEM_HINT}")
        self.port = free_port()
        # Under /tmp, not pytest's tmp_path: as root that is private to root, and the cluster
        # belongs to postgres, who must be able to reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="fieldsync-faults-pg-", dir="/tmp"))
        self.data = self.dir / "data"
        self.sockets = self.dir / "run"
        self.logfile = self.dir / "postgres.log"
        try:
            if os.geteuid() == 0:
                shutil.chown(self.dir, "postgres", "postgres")
            self._as_postgres(["mkdir", "-m", "700", str(self.sockets)])
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)  # the caller never gets an object to destroy
            raise

    def _as_postgres(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        result = subprocess.run(argv, cwd="/", capture_output=True, text=True, timeout=timeout, check=False)
        assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}\n{self.log_tail()}"
        return result

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.logfile.read_text(errors="replace")[-3000:]
        return ""

    def init(self) -> None:
        self._as_postgres([str(PG_BINDIR / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                           "-E", "UTF8", "--locale=C", "--no-sync"])

    def start(self, **settings: str) -> None:
        """`settings`: more server settings for this cluster (e.g. max_prepared_transactions)."""
        # fsync off: these tests kill processes, never the machine, so the OS keeps every write.
        # synchronous_commit stays on: a commit a client was told of is in the WAL, and an
        # immediate stop (no checkpoint) must lose none of them.
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.sockets} "
                   "-c fsync=off" + "".join(f" -c {name}={value}" for name, value in settings.items()))
        self._as_postgres([str(PG_BINDIR / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "60",
                           "-o", options, "start"])

    def stop(self, mode: str) -> None:
        self._as_postgres([str(PG_BINDIR / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"])

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str) -> psycopg.Connection:
        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=5)

    def create_database(self, name: str) -> None:
        with self.connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        with self.connect(name) as conn:
            try:
                conn.execute("CREATE EXTENSION postgis")
            except psycopg.errors.FeatureNotSupported as exc:
                raise AssertionError(f"PostGIS is not installed for PostgreSQL {PG_MAJOR}: {SYSTEM_HINT}") from exc

    def destroy(self) -> None:
        """Stop at once (the test is over; nothing needs keeping) and remove every file."""
        try:
            pidfile = self.data / "postmaster.pid"
            if pidfile.exists():
                try:
                    self.stop("immediate")
                except AssertionError:
                    # pg_ctl could not stop it: kill the postmaster by the pid it wrote (its
                    # backends exit when they notice the postmaster is gone).
                    with contextlib.suppress(OSError, ValueError, ProcessLookupError):
                        os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class HttpHandheld:
    """An enrolled handheld talking to the server over real HTTP."""

    def __init__(self, base_url: str, token: str, device_id: str):
        self.token = token
        self.device_id = device_id
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        self.cursor: str | None = None
        self.store: dict[str, dict] = {}

    @classmethod
    def enrol(cls, base_url: str, username: str, label: str) -> HttpHandheld:
        response = httpx.post(f"{base_url}/api/v1/devices/enrol", timeout=30,
                              json={"username": username, "password": PASSWORD, "label": label, "platform": "test"})
        assert response.status_code == 201, response.text
        body = response.json()
        return cls(base_url, body["token"], body["device_id"])

    def push(self, mutations: list[dict]) -> httpx.Response:
        return self.http.post("/api/v1/sync/push", json={"mutations": mutations})

    def pull_page(self, limit: int = 200) -> httpx.Response:
        return self.http.get("/api/v1/sync/pull", params={"limit": limit, **({"cursor": self.cursor}
                                                                              if self.cursor else {})})

    def apply_page(self, body: dict) -> bool:
        """Apply a pull page as a client does; True while there is more."""
        for change in body["changes"]:
            if change["op"] == "upsert":
                self.store[change["id"]] = change
            else:
                self.store.pop(change["id"], None)
        self.cursor = body["cursor"]
        return body["has_more"]

    def close(self) -> None:
        self.http.close()


def outbox_batch(tag: str) -> tuple[list[dict], list[str]]:
    """One push as a handheld's outbox holds it: two observations, each created and then
    edited, a street audit and one of its items (the item names the audit created before it in
    the same push). Every mutation applies, so each adds exactly one version. Returns the
    mutations and the ids of the records they make."""
    mutations, records = [], []
    for j in range(2):
        record = uuid.uuid4()
        records.append(str(record))
        mutations.append(mutation("observation", "create", record, observation_data(description=f"{tag}/{j}")))
        mutations.append(mutation("observation", "update", record, {"description": f"{tag}/{j} edited"},
                                  base_version=1))
    audit, item = uuid.uuid4(), uuid.uuid4()
    records += [str(audit), str(item)]
    mutations.append(mutation("street_audit", "create", audit, audit_data(title=f"walk {tag}")))
    mutations.append(mutation("audit_item", "create", item, item_data(audit)))
    return mutations, records


def creates_only(tag: str) -> tuple[list[dict], list[str]]:
    """A push of creates only (three observations, an audit and its item): one record per mutation."""
    mutations, records = [], []
    for j in range(3):
        record = uuid.uuid4()
        records.append(str(record))
        mutations.append(mutation("observation", "create", record, observation_data(description=f"{tag}/{j}")))
    audit, item = uuid.uuid4(), uuid.uuid4()
    records += [str(audit), str(item)]
    mutations.append(mutation("street_audit", "create", audit, audit_data(title=f"walk {tag}")))
    mutations.append(mutation("audit_item", "create", item, item_data(audit)))
    return mutations, records


def stored(conn: psycopg.Connection, mutation_ids: list[str], record_ids: list[str]) -> dict[str, dict[str, int]]:
    """What the database holds of these mutations and records, counted: receipts and version
    rows per mutation, rows per record (across the record tables) and change-feed rows per
    record. Exactly once means a 1 for every receipt, version and record."""
    found: dict[str, dict[str, int]] = {"receipts": {}, "versions": {}, "records": {}, "feed": {}}
    rows = conn.execute(
        "SELECT m::text, (SELECT count(*) FROM sync_receipt r WHERE r.mutation_id = m), "
        "(SELECT count(*) FROM sync_recordversion v WHERE v.mutation_id = m) FROM unnest(%s::uuid[]) AS m",
        [mutation_ids],
    ).fetchall()
    for mutation_id, receipts, versions in rows:
        found["receipts"][mutation_id] = receipts
        found["versions"][mutation_id] = versions
    in_tables = " + ".join(f"(SELECT count(*) FROM {table} t WHERE t.id = r)" for table in RECORD_TABLES)
    rows = conn.execute(
        f"SELECT r::text, {in_tables}, (SELECT count(*) FROM sync_change c WHERE c.record_id = r) "
        "FROM unnest(%s::uuid[]) AS r",
        [record_ids],
    ).fetchall()
    for record_id, records, feed in rows:
        found["records"][record_id] = records
        found["feed"][record_id] = feed
    return found


def table_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Exact row counts of every table of the public schema (the app's, the engine's, the
    access log's), to show that something left no trace anywhere."""
    tables = [name for (name,) in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename").fetchall()]
    return {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in tables}
