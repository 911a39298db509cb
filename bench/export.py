#!/usr/bin/env python
"""Export benchmark: a GeoJSON (and CSV) export of N records streamed through gunicorn,
next to GDAL reading the same rows straight from PostGIS, in the same run.

    .venv/bin/python bench/export.py [--n 1000000] [--formats geojson,csv]

It makes its own database (`<name>_export_bench` beside DATABASE_URL's), loads N
observations with personal fields (SQL, as years of pushes would have), and for each case
starts a fresh single-worker gunicorn, streams the export over one HTTP connection and
prints:
  rows/s and MB/s as the client received them;
  the worker's resident memory before the request (VmRSS, Django loaded and warm) and its
  peak during it (VmHWM from /proc/<pid>/status): constant memory means the peak does not
  grow with N;
  for the admin case, which sees personal fields, the size of the s.62 row written first;
  ogr2ogr -f GeoJSON /dev/null PG:... -sql ... over the same rows and columns (rows/s).
Figures, not pass/fail.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sync import (  # noqa: E402 - after the path is set, so the script runs from anywhere
    LEIGH,
    PASSWORD,
    WIGAN,
    bench_database_url,
    free_port,
    recreate_database,
    start_gunicorn,
)


def setup_environment(url: str, n: int) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "bench-" + "k" * 60)
    os.environ["FIELDSYNC_HTTPS"] = "false"
    os.environ["ANALYSIS_STREAM_MAX_ROWS"] = str(max(n, 1) * 10)
    os.environ.pop("DEBUG", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "fieldsync.settings"


def seed(url: str, n: int) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from warden_app.services.demo import demo_seed

    demo = demo_seed(password=PASSWORD)
    import psycopg

    leigh, wigan = demo.areas["LEIGH-TC"].pk, demo.areas["WIGAN-TC"].pk
    council = demo.organisations["Wigan Council"].pk
    warden = demo.users["warden_leigh"].pk
    form = demo.forms["observation"].pk
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE warden_app_observation DISABLE TRIGGER warden_app_observation_area")
        for area, at, count in ((leigh, LEIGH, n - n // 4), (wigan, WIGAN, n // 4)):
            conn.execute(
                """
                INSERT INTO warden_app_observation (id, version, created_at, updated_at, form_id, author_id,
                  organisation_id, area_id, review_state, qualifier, incident_type, observed_at, description,
                  action_taken, persons_involved, location, accuracy_m, fix_source, photos)
                SELECT gen_random_uuid(), 1, now() - (g * interval '1 s'), now() - (g * interval '1 s'), %s, %s, %s,
                  %s, 'approved', (ARRAY['personal','nuisance','environmental'])[1 + g %% 3], 'street_drinking',
                  now() - (g * interval '1 s'), 'Group of four drinking on the benches by the library',
                  '{advice}', '[{"description": "male, 30s, red coat", "approx_age": 35}]',
                  ST_SetSRID(ST_MakePoint(%s + random() * 0.006, %s + random() * 0.006), 4326), 6.5, 'gps', '{}'
                FROM generate_series(1, %s) g
                """,
                [form, warden, council, area, at[0] - 0.003, at[1] - 0.003, count],
            )
            conn.commit()  # deferred foreign-key checks run here
        conn.execute("ALTER TABLE warden_app_observation ENABLE TRIGGER warden_app_observation_area")
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE warden_app_observation")
    print(f"loaded {n:,} observations in {time.perf_counter() - started:.1f} s")


def worker_pid(master: int) -> int:
    for _ in range(100):
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise SystemExit("no gunicorn worker")


def memory_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def fetch(port: int, path: str, username: str) -> tuple[int, int, float, dict]:
    """(bytes, features counted, seconds, headers) of one streamed response."""
    auth = base64.b64encode(f"{username}:{PASSWORD}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    started = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Basic {auth}"})
    response = conn.getresponse()
    assert response.status == 200, response.read()[:500]
    total, rows, tail = 0, 0, b""
    marker = b'"type" : "Feature"' if "geojson" in path else b"\n"
    while chunk := response.read(1 << 20):
        total += len(chunk)
        window = tail + chunk
        rows += window.count(marker)
        tail = window[len(window) - len(marker) + 1:]  # a marker split across reads is counted once
    elapsed = time.perf_counter() - started
    if marker == b"\n":
        rows -= 1  # the header line
    return total, rows, elapsed, dict(response.getheaders())


def run_case(username: str, fmt: str, n: int, url: str) -> None:
    port = free_port()
    server = start_gunicorn(port, 1, "--timeout", "900")
    try:
        pid = worker_pid(server.pid)
        fetch(port, "/api/v1/records/observation?limit=10", username)  # warm: imports, plans, connection
        before = memory_kib(pid, "VmRSS")
        size, rows, elapsed, headers = fetch(port, f"/api/v1/records/observation?format={fmt}", username)
        peak = memory_kib(pid, "VmHWM")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert rows == n, f"{rows} rows streamed, {n} expected"
    logged = ""
    if "X-Access-Log-Entry" in headers:
        import psycopg

        with psycopg.connect(url) as conn:
            count, = conn.execute("SELECT cardinality(record_ids) FROM warden_app_accesslogentry WHERE id = %s",
                                  [int(headers["X-Access-Log-Entry"])]).fetchone()
        logged = f" | s.62 row naming {count:,} ids written first"
    print(f"  {fmt:7} as {username:7}: {rows / elapsed:9,.0f} rows/s, {size / elapsed / 1e6:6.1f} MB/s "
          f"({size / 1e6:,.0f} MB in {elapsed:.1f} s) | worker RSS {before / 1024:.0f} MiB before, "
          f"peak {peak / 1024:.0f} MiB{logged}")


def run_ogr2ogr(url: str, n: int) -> None:
    parts = urlsplit(url)
    dsn = (f"PG:host={parts.hostname} port={parts.port or 5432} dbname={parts.path.lstrip('/')} "
           f"user={unquote(parts.username or '')}" + (f" password={unquote(parts.password)}" if parts.password else ""))
    sql = ("SELECT o.id::text AS id, o.version, org.slug AS organisation, u.username AS author, o.area_id, "
           "a.name AS area, o.qualifier, o.incident_type, o.observed_at, o.review_state, o.description, "
           "o.action_taken, o.persons_involved::text AS persons_involved, o.photos, o.accuracy_m, o.fix_source, "
           "f.version AS form_version, o.created_at, o.updated_at, o.location "
           "FROM warden_app_observation o JOIN warden_app_organisation org ON org.id = o.organisation_id "
           "JOIN warden_app_user u ON u.id = o.author_id LEFT JOIN warden_app_area a ON a.id = o.area_id "
           "JOIN warden_app_formdefinition f ON f.id = o.form_id")
    started = time.perf_counter()
    # /vsistdout/ into /dev/null: the GeoJSON driver will not "create" /dev/null itself.
    with open(os.devnull, "wb") as sink:
        result = subprocess.run(["ogr2ogr", "-f", "GeoJSON", "/vsistdout/", dsn, "-sql", sql, "-lco", "RFC7946=NO"],
                                stdout=sink, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    print(f"  ogr2ogr -f GeoJSON /vsistdout/ PG:… -sql … > /dev/null: {n / elapsed:9,.0f} rows/s ({elapsed:.1f} s), "
          f"straight from PostGIS, no HTTP, no redaction, no log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="observations to export")
    parser.add_argument("--formats", default="geojson,csv")
    parser.add_argument("--keep", action="store_true", help="reuse the bench database if it holds --n records")
    args = parser.parse_args()
    url = bench_database_url("_export_bench")
    setup_environment(url, args.n)
    if not args.keep or not _has_records(url, args.n):
        recreate_database(url)
        seed(url, args.n)
    print(f"fieldsync export benchmark — {os.cpu_count()} cores, {args.n:,} observations, "
          f"db {url.rsplit('/', 1)[1]}, gunicorn 1 sync worker")
    for fmt in args.formats.split(","):
        # admin sees personal fields (a disclosure row first); the analyst sees them redacted.
        for username in ("admin", "analyst"):
            run_case(username, fmt, args.n, url)
    run_ogr2ogr(url, args.n)


def _has_records(url: str, n: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(url) as conn:
            return conn.execute("SELECT count(*) FROM warden_app_observation").fetchone()[0] == n
    except psycopg.Error:
        return False


if __name__ == "__main__":
    main()
