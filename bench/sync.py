#!/usr/bin/env python
"""Sync benchmark: push, pull and first-sync figures, each next to a baseline measured
in the same run on the same machine.

    .venv/bin/python bench/sync.py [--mutations 20000] [--big 1000000] [--repeat 3] [--quick]

It makes its own database (`<name>_bench` beside DATABASE_URL's), starts gunicorn on a
free port, and prints:
  push     mutations/s for batches of 100 and 500 from one client, through gunicorn (the
           median of --repeat runs, each interleaved with its baseline's);
           raw psycopg COPY of every row such a push writes (records, versions, change
           feed, receipts, log); a plain DRF ModelSerializer + bulk_create endpoint.
  pull     one page of 500 changes from stores of 10k and --big records, for a busy
           and a nearly empty area (ms per page, and the big/small ratio).
  first    a first sync of 20k in-scope records, paged (records/s).
Figures, not pass/fail: see docs/benchmarks.md for what they mean.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LEIGH = (-2.517, 53.4975)
WIGAN = (-2.6325, 53.545)
PASSWORD = "bench-password-123"


def bench_database_url(suffix: str = "_bench") -> str:
    # The suffix lets other benchmarks (bench/peers.py) keep a database of their own.
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fieldsync")
    parts = urlsplit(base)
    name = (parts.path.lstrip("/") or "fieldsync") + suffix
    return urlunsplit(parts._replace(path="/" + name))


def setup_environment(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "bench-" + "k" * 60)
    os.environ["FIELDSYNC_HTTPS"] = "false"
    os.environ["SYNC_DEVICE_RATE"] = "100000/min"
    # Each run enrols a handful of handhelds from loopback: runs back to back would meet
    # the per-address enrolment limit (its counters outlive the run, in Redis).
    os.environ["SYNC_ENROL_RATE"] = "100000/min"
    os.environ["FIELDSYNC_URLCONF"] = "bench.urls"
    os.environ.pop("DEBUG", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "fieldsync.settings"


def recreate_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    name = parts.path.lstrip("/")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name]
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Whether the server runs as behind nginx's TLS (bench/peers.py: production settings).
BEHIND_TLS = False


class Http:
    """One keep-alive connection, like one handheld."""

    def __init__(self, port: int, token: str | None = None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.token = token
        # What nginx adds in production (deploy/nginx): the app then runs with its HTTPS
        # settings on (FIELDSYNC_HTTPS=true) and does not redirect. bench/peers.py sets it.
        self.extra = {"X-Forwarded-Proto": "https"} if BEHIND_TLS else {}

    def call(self, method: str, path: str, body: bytes | None = None, ctype: str = "application/json"):
        headers = {"Content-Type": ctype, **self.extra}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        return response.status, data


def seed(world_size: dict) -> dict:
    """Two areas, a warden in each, forms; returns ids the benchmark needs.
    world_size["busy_wardens"] adds that many more wardens to the busy team (busy_1, …),
    for benchmarks that push from several handhelds at once; world_size["pcso_reader"] a
    police PCSO to it (busy_pcso), a reader whose pulls are redacted."""
    import django

    django.setup()
    from django.contrib.gis.geos import MultiPolygon, Polygon
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from warden_app.models import Area, BoundarySet, FormDefinition, Organisation, User
    from warden_app.roles import Role
    from warden_app.services.roles import role_groups_ensure
    from warden_app.services.teams import team_add_member, team_get_or_create, team_set_areas

    groups = role_groups_ensure()
    org = Organisation.objects.create(name="Bench Council", slug="bench", kind="council")
    ops = BoundarySet.objects.create(name="Ops", slug="ops", operational=True)
    leigh = Area.objects.create(boundary_set=ops, name="Leigh", code="L",
                                geom=MultiPolygon(Polygon.from_bbox((-2.525, 53.492, -2.509, 53.503))))
    wigan = Area.objects.create(boundary_set=ops, name="Wigan", code="W",
                                geom=MultiPolygon(Polygon.from_bbox((-2.640, 53.540, -2.625, 53.550))))
    FormDefinition.objects.create(record_type="observation", version=1, title="ASB", definition={})
    FormDefinition.objects.create(record_type="street_audit", version=1, title="EVA",
                                  definition={"checklist": [{"code": "litter", "graded": True}]})
    users = {}
    extra = tuple(f"_{i}" for i in range(1, world_size.get("busy_wardens", 0) + 1))
    for name, area in (("busy", leigh), ("quiet", wigan)):
        team = team_get_or_create(name=name)
        team_set_areas(team=team, areas=[area])
        for suffix in ("", "_reader") + (extra if name == "busy" else ()):
            user = User.objects.create_user(username=name + suffix, password=PASSWORD, organisation=org)
            user.groups.add(groups[Role.WARDEN])
            team_add_member(team=team, user=user)
            users[name + suffix] = user.pk
    if world_size.get("pcso_reader"):
        # Police staff in the council's busy team: the council's personal fields are not
        # shared with the police (no sharing rule), so this reader's pulls are redacted.
        police = Organisation.objects.create(name="Bench Police", slug="bench-police", kind="police")
        pcso = User.objects.create_user(username="busy_pcso", password=PASSWORD, organisation=police)
        pcso.groups.add(groups[Role.PCSO])
        team_add_member(team=team_get_or_create(name="busy"), user=pcso)
        users["busy_pcso"] = pcso.pk
    return {"leigh": leigh.pk, "wigan": wigan.pk, "org": org.pk, "users": users}


def start_gunicorn(port: int, workers: int, *options: str) -> subprocess.Popen:
    """gunicorn on loopback with the environment as set up here; `options` are more of its
    command-line options (bench/export.py: a longer --timeout)."""
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "fieldsync.wsgi", "-b", f"127.0.0.1:{port}",
         "-w", str(workers), "--log-level", "warning", *options],
        cwd=ROOT, env=os.environ.copy(),
    )
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    raise SystemExit("gunicorn did not start")


def enrol(port: int, username: str) -> str:
    status, data = Http(port).call("POST", "/api/v1/devices/enrol", json.dumps(
        {"username": username, "password": PASSWORD, "label": "bench"}).encode())
    assert status == 201, data
    return json.loads(data)["token"]


def observation(at=LEIGH) -> dict:
    return {
        "mutation_id": str(uuid.uuid4()), "type": "observation", "op": "create", "id": str(uuid.uuid4()),
        "base_version": None, "client_time": datetime.now(UTC).isoformat(),
        "data": {
            "qualifier": "nuisance", "incident_type": "street_drinking",
            "observed_at": (datetime.now(UTC) - timedelta(minutes=3)).isoformat(),
            "description": "Group of four drinking on the benches by the library",
            "action_taken": ["advice"], "persons_involved": [{"description": "male, 30s", "approx_age": 35}],
            "location": {"type": "Point", "coordinates": [at[0] + 0.001, at[1] - 0.001]},
            "accuracy_m": 6.5, "fix_source": "gps",
        },
    }


def bench_push(port: int, token: str, batch: int, total: int) -> float:
    client = Http(port, token)
    bodies = [json.dumps({"mutations": [observation() for _ in range(batch)]}).encode()
              for _ in range(total // batch)]
    client.call("POST", "/api/v1/sync/push", bodies[0])  # warm the connection and the plans
    started = time.perf_counter()
    for body in bodies[1:]:
        status, data = client.call("POST", "/api/v1/sync/push", body)
        assert status == 200, data[:300]
    elapsed = time.perf_counter() - started
    return batch * (len(bodies) - 1) / elapsed


def bench_drf_baseline(port: int, token: str, batch: int, total: int) -> float:
    client = Http(port, token)
    rows = []
    for _ in range(total // batch):
        rows.append(json.dumps([observation()["data"] | {"id": str(uuid.uuid4())} for _ in range(batch)]).encode())

    def post(body):
        status, data = client.call("POST", "/bench/drf-bulk", body)
        assert status == 201, data[:300]

    post(rows[0])
    started = time.perf_counter()
    for body in rows[1:]:
        post(body)
    return batch * (len(rows) - 1) / (time.perf_counter() - started)


def bench_copy_baseline(url: str, n: int, ids: dict) -> tuple[float, float]:
    """COPY of every row a push of n creates writes, into look-alike tables: returns
    (rows/s, equivalent mutations/s)."""
    import psycopg

    user, org = ids["users"]["busy"], ids["org"]
    now = datetime.now(UTC)
    with psycopg.connect(url) as conn:
        form_id = conn.execute("SELECT min(id) FROM warden_app_formdefinition").fetchone()[0]
        device = conn.execute("SELECT id FROM sync_device WHERE user_id = %s LIMIT 1", [user]).fetchone()[0]
        for table in ("warden_app_observation", "sync_recordversion", "sync_change", "sync_receipt",
                      "warden_app_accesslogentry"):
            conn.execute(f"CREATE TEMP TABLE copy_{table} (LIKE {table} INCLUDING ALL)")
        records, versions, feed, receipts = [], [], [], []
        for i in range(n):
            m = observation()
            rid, mid = m["id"], m["mutation_id"]
            d = m["data"]
            records.append((rid, 1, now, now, now, None, form_id, user, org, device, ids["leigh"], "submitted",
                            d["qualifier"], d["incident_type"], now, d["description"], d["action_taken"],
                            json.dumps(d["persons_involved"]), "SRID=4326;POINT(-2.516 53.4965)", 6.5, "gps", []))
            versions.append((i + 1, "observation", rid, 1, ["qualifier"], json.dumps(d), user, device, mid, now))
            feed.append((2 * i + 1, "observation", rid, f"a:{ids['leigh']}", 1, 2 * i, now))
            feed.append((2 * i + 2, "observation", rid, f"u:{user}", 1, 2 * i + 1, now))
            receipts.append((i + 1, user, device, mid, "observation", rid, "create", "0" * 64, "applied",
                             json.dumps({"status": "applied"}), now))
        started = time.perf_counter()
        with conn.cursor() as cur:
            for table, rows_, cols in (
                ("warden_app_observation", records,
                 "id, version, created_at, updated_at, client_time, deleted_at, form_id, author_id, organisation_id, "
                 "device_id, area_id, review_state, qualifier, incident_type, observed_at, description, action_taken, "
                 "persons_involved, location, accuracy_m, fix_source, photos"),
                ("sync_recordversion", versions,
                 "id, record_type, record_id, version, changed_fields, data, user_id, device_id, mutation_id, "
                 "created_at"),
                ("sync_change", feed, "id, record_type, record_id, scope_key, xid, seq, changed_at"),
                ("sync_receipt", receipts,
                 "id, user_id, device_id, mutation_id, record_type, record_id, op, payload_hash, status, result, "
                 "created_at"),
            ):
                with cur.copy(f"COPY copy_{table} ({cols}) FROM STDIN") as copy:
                    for row in rows_:
                        copy.write_row(row)
            cur.execute("INSERT INTO copy_warden_app_accesslogentry (at, action, record_type, record_ids, details, "
                        "recipient, purpose) VALUES (now(), 'collection', 'observation', %s::uuid[], '{}', '', '')",
                        [[r[0] for r in records]])
        conn.commit()
        elapsed = time.perf_counter() - started
    total_rows = len(records) + len(versions) + len(feed) + len(receipts) + 1
    return total_rows / elapsed, n / elapsed


def grow_store(url: str, ids: dict, busy: int, quiet: int) -> None:
    """Add records straight into the tables (as years of pushes would have), spread over
    the busy area with a trickle in the quiet one, and their change-feed rows."""
    import psycopg

    user_busy, user_quiet, org = ids["users"]["busy"], ids["users"]["quiet"], ids["org"]
    with psycopg.connect(url) as conn:
        form_id = conn.execute("SELECT min(id) FROM warden_app_formdefinition").fetchone()[0]
        conn.execute("ALTER TABLE warden_app_observation DISABLE TRIGGER warden_app_observation_area")
        for area, user, count, at in ((ids["leigh"], user_busy, busy, LEIGH), (ids["wigan"], user_quiet, quiet, WIGAN)):
            if count <= 0:
                continue
            conn.execute(
                """
                WITH new AS (
                  INSERT INTO warden_app_observation (id, version, created_at, updated_at, form_id, author_id,
                    organisation_id, area_id, review_state, qualifier, incident_type, observed_at, description,
                    action_taken, persons_involved, location, accuracy_m, fix_source, photos)
                  SELECT gen_random_uuid(), 1, now() - interval '1 day' + (g * interval '1 ms'),
                    now() - interval '1 day', %s, %s, %s, %s, 'approved', 'nuisance', 'noise',
                    now() - interval '1 day', 'bulk record', '{}', '[]',
                    ST_SetSRID(ST_MakePoint(%s + random() * 0.004, %s + random() * 0.004), 4326), 5, 'gps', '{}'
                  FROM generate_series(1, %s) g RETURNING id)
                INSERT INTO sync_change (record_type, record_id, scope_key, xid, seq, changed_at)
                SELECT 'observation', id, 'a:' || %s, pg_current_xact_id()::text::bigint, nextval('sync_change_seq'),
                       now() - interval '1 day' FROM new
                """,
                [form_id, user, org, area, at[0] - 0.002, at[1] - 0.002, count, area],
            )
            conn.commit()
        conn.execute("ALTER TABLE warden_app_observation ENABLE TRIGGER warden_app_observation_area")
        conn.execute("ANALYZE")
        conn.commit()


def page_ms(port: int, token: str, cursor: str | None, reps: int = 5) -> tuple[float, int]:
    client = Http(port, token)
    times, count = [], 0
    for _ in range(reps):
        started = time.perf_counter()
        status, data = client.call("GET", "/api/v1/sync/pull?limit=500" + (f"&cursor={cursor}" if cursor else ""))
        times.append((time.perf_counter() - started) * 1000)
        assert status == 200, data[:300]
        count = len(json.loads(data)["changes"])
    return statistics.median(times), count


def cursor_before_last(port: int, token: str, n: int) -> str | None:
    """A cursor that has seen everything but the last n changes of the area (page to the
    end with big pages, then re-pull from the cursor before the tail)."""
    client = Http(port, token)
    cursor, cursors = None, []
    while True:
        _status, data = client.call("GET", "/api/v1/sync/pull?limit=1000" + (f"&cursor={cursor}" if cursor else ""))
        page = json.loads(data)
        cursors.append((cursor, len(page["changes"])))
        cursor = page["cursor"]
        if not page["has_more"]:
            break
    # The cursor handed out before the last page holds at most 1000 newer changes.
    return cursors[-1][0] if len(cursors) > 1 else None


def bench_pull(url: str, port: int, ids: dict, sizes: list[int]) -> list[tuple]:
    rows = []
    grown = 0
    for size in sizes:
        grow_store(url, ids, size - grown - 5, 5 if grown == 0 else 0)
        grown = size
        busy_token = enrol(port, "busy_reader")
        quiet_token = enrol(port, "quiet_reader")
        busy_cursor = cursor_before_last(port, busy_token, 500)
        busy_ms, busy_n = page_ms(port, busy_token, busy_cursor)
        quiet_ms, quiet_n = page_ms(port, quiet_token, None)
        rows.append((size, busy_ms, busy_n, quiet_ms, quiet_n))
    return rows


def bench_first_sync(url: str, port: int, ids: dict, n: int) -> tuple[float, float, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        # Everything of the busy area out of the sync window (SYNC_WINDOW_DAYS, 30)...
        conn.execute("UPDATE sync_change SET changed_at = now() - interval '60 days' WHERE scope_key = %s",
                     [f"a:{ids['leigh']}"])
        conn.execute("UPDATE warden_app_observation SET updated_at = now() - interval '60 days' WHERE area_id = %s",
                     [ids["leigh"]])
        # ...then exactly n of its records back in: the device's first sync is those n. As a
        # real write would, the write that brings them in also gives them its xid and a fresh
        # seq (a feed row's time and position always come from the same transaction).
        conn.execute(
            "UPDATE sync_change SET changed_at = now(), xid = pg_current_xact_id()::text::bigint, "
            "seq = nextval('sync_change_seq') WHERE record_id IN "
            "(SELECT record_id FROM sync_change WHERE scope_key = %s ORDER BY xid DESC, seq DESC LIMIT %s)",
            [f"a:{ids['leigh']}", n],
        )
        conn.execute("UPDATE warden_app_observation SET updated_at = now() WHERE id IN "
                     "(SELECT record_id FROM sync_change WHERE changed_at > now() - interval '1 hour')")
        conn.commit()
        # Rewriting a whole area at once leaves a million dead row versions inside the window's
        # index range, which a real store (rows change a few at a time, autovacuum behind them)
        # never holds: clean them up as autovacuum would, so the figure is a first sync's.
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE sync_change")
        conn.execute("VACUUM ANALYZE warden_app_observation")
    token = enrol(port, "busy_reader")
    client = Http(port, token)
    cursor, got, parsing = None, 0, 0.0
    started = time.perf_counter()
    while True:
        _status, data = client.call("GET", "/api/v1/sync/pull?limit=1000" + (f"&cursor={cursor}" if cursor else ""))
        # The client reads every page before asking for the next, as a handheld does; its
        # own parsing (Python's json: ~11 ms a page of 1000 here) is timed apart: the server's share.
        parse_started = time.perf_counter()
        page = json.loads(data)
        parsing += time.perf_counter() - parse_started
        got += len(page["changes"])
        cursor = page["cursor"]
        if not page["has_more"]:
            break
    elapsed = time.perf_counter() - started
    return got / elapsed, got / (elapsed - parsing), got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mutations", type=int, default=20000, help="mutations per push figure")
    parser.add_argument("--big", type=int, default=1_000_000, help="records in the big store")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each push figure and its DRF baseline, interleaved; the median is printed")
    args = parser.parse_args()
    if args.quick:
        args.mutations, args.big = 3000, 30_000
    url = bench_database_url()
    setup_environment(url)
    recreate_database(url)
    ids = seed({})
    port = free_port()
    server = start_gunicorn(port, args.workers)
    try:
        db_name = url.rsplit("/", 1)[1]
        print(f"fieldsync sync benchmark — {os.cpu_count()} cores, gunicorn {args.workers} workers, db {db_name}")
        token = enrol(port, "busy")
        print("\npush (one client, creates, through gunicorn)")
        for batch in (100, 500):
            # Interleaved runs and their medians: on a shared VM one slow disk flush or a
            # neighbour's burst moves a single run by 15%.
            rates, drfs = [], []
            for _ in range(max(1, args.repeat)):
                rates.append(bench_push(port, token, batch, args.mutations))
                drfs.append(bench_drf_baseline(port, token, batch, min(args.mutations, 10000)))
            rate, drf = statistics.median(rates), statistics.median(drfs)
            spread = f" (runs {min(rates):.0f}-{max(rates):.0f})" if len(rates) > 1 else ""
            print(f"  batch {batch:>3}: fieldsync {rate:8.0f} mutations/s{spread} | plain DRF bulk_create "
                  f"{drf:7.0f} rows/s | ratio {rate / drf:4.2f}x")
        copy_rows, copy_mutations = bench_copy_baseline(url, args.mutations, ids)
        print(f"  raw COPY of the same rows: {copy_rows:8.0f} rows/s = {copy_mutations:.0f} mutations/s "
              f"(records, versions, feed x2, receipts, log)")

        print("\npull (one page of 500; busy area = most of the store, quiet area = 5 records)")
        results = bench_pull(url, port, ids, [10_000, args.big])
        for size, busy_ms, busy_n, quiet_ms, quiet_n in results:
            print(f"  store {size:>9,}: busy {busy_ms:6.1f} ms ({busy_n} changes) | "
                  f"quiet {quiet_ms:6.1f} ms ({quiet_n} changes)")
        (_, b0, _, q0, _), (_, b1, _, q1, _) = results
        print(f"  big/small ratio: busy {b1 / b0:4.2f}x, quiet {q1 / q0:4.2f}x (target <= 1.5x)")

        print("\nfirst sync (20k in-scope records, pages of 1000)")
        rate, served, got = bench_first_sync(url, port, ids, 20_000)
        print(f"  {got} records at {rate:8.0f} records/s (target >= 20,000/s); "
              f"{served:.0f} records/s leaving out the client's own JSON parsing")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
