#!/usr/bin/env python
"""fieldsync next to a peer sync server, the same shapes of work, in one run.

    .venv/bin/python bench/peers.py [--quick] [--sizes 20000,200000] [--peers-dir ../shared/peers]

The peer is PouchDB Server (CouchDB replication protocol, LevelDB). Its install, start/stop
scripts and its benchmark live in <peers-dir>/pouchdb and are used from there, never copied.
First the peer is installed (idempotent), started, measured by its own bench.py and stopped;
then fieldsync runs in gunicorn on a database of its own (`<name>_bench_peers`) and gets:

  ingest  pushes of N new observations in batches of 100 and 500 from 1 and 4 handhelds at
          once (4 wardens: one user's pushes are serialised by design), empty store each run
  feed    a first sync of a store of N records, pages of 500 (records/s), by a warden of the
          same organisation and by a PCSO (police: the council's personal fields redacted)
  single  one new observation per push, one push after another: the p50 round trip
  page    one page of 500 at stores of N and BIG records: the first page of a first sync
          (head) and the last 500 changes for a device that was up to date (tail)

fieldsync runs as production does: gunicorn with deploy/gunicorn.conf.py (access log included),
DEBUG off, HTTPS settings on behind the header nginx adds; the client is the standard library's
http.client on keep-alive connections, sending what the handheld sends. N and BIG are --sizes.
Only one server runs while it is measured (two cores); PostgreSQL and
Redis stay up throughout. The table's ratio is how many times faster fieldsync is (above 1:
fieldsync ahead), for throughput and for page time alike.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, bench/ is sys.path[0]: the set-up of bench/sync.py is imported, not copied.
import sync

ROOT = sync.ROOT
VAR = ROOT / "var" / "peers"
# The shared peer directory is read-only and shared by every checkout: install and data go here.
NODE_PREFIX = VAR / "pouchdb-node"
POUCH_DATA = VAR / "pouchdb-data"
PAGE = 500
BATCHES = (100, 500)
CLIENTS = (1, 4)
# The peer fills its stores with batches of 500 from two clients; fieldsync's are filled alike.
FILL_BATCH, FILL_CLIENTS = 500, 2
# Bodies for at most this many records are held in memory at once while filling a big store.
FILL_CHUNK = 50_000


# --- the peer -------------------------------------------------------------------------------

def run_pouchdb(pouch: Path, args, sizes: list[int]) -> dict:
    env = os.environ | {"PREFIX": str(NODE_PREFIX)}
    subprocess.run([str(pouch / "setup.sh")], env=env, check=True)
    if (POUCH_DATA / "pid").exists():
        # Left by an earlier run of this script that did not get to stop it.
        subprocess.run([str(pouch / "stop.sh"), str(POUCH_DATA)], env=env, check=False)
    shutil.rmtree(POUCH_DATA, ignore_errors=True)
    port = sync.free_port()
    subprocess.run([str(pouch / "start.sh"), str(port), str(POUCH_DATA)], env=env, check=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "pouchdb.json"
            subprocess.run(
                [sys.executable, str(pouch / "bench.py"), "--url", f"http://127.0.0.1:{port}",
                 "--n", str(sizes[0]), "--big", str(sizes[1]), "--runs", str(args.runs),
                 "--reps", str(args.reps), "--json", str(out)],
                check=True,
            )
            raw = json.loads(out.read_text())
    finally:
        subprocess.run([str(pouch / "stop.sh"), str(POUCH_DATA)], env=env, check=False)
        # A 200k LevelDB store is large and worthless once measured.
        shutil.rmtree(POUCH_DATA, ignore_errors=True)

    def label(n: int) -> str:  # bench.py names its page figures by thousands
        return f"{n // 1000}k"

    median = statistics.median
    return {
        "doc_bytes": raw["doc_bytes"],
        "ingest": {(b, c): median(raw["ingest"][f"b{b}_c{c}"]) for b in BATCHES for c in CLIENTS},
        "feed": median(raw["changes"]["page_through"]),
        "page": {(n, where): median(raw["page"][f"{label(n)}_{key}"])
                 for n in sizes for where, key in (("head", "head since=0"), ("tail", "tail"))},
        "raw": raw,
    }


# --- fieldsync ------------------------------------------------------------------------------

def reset_store(url: str) -> None:
    """Empty what pushes write (records, versions, change feed, receipts), as the peer uses a
    fresh database per run. The access log stays: it is append-only, one row per request."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE warden_app_observation, sync_recordversion, sync_change, sync_receipt CASCADE")


def settle(url: str) -> None:
    """Vacuum and analyse after a fill, as autovacuum would have on a store that grew over
    months; otherwise the page figures depend on when autovacuum happens to wake up."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) warden_app_observation, sync_change, sync_recordversion, sync_receipt")


def push_concurrent(port: int, tokens: list[str], batch: int, total: int) -> float:
    """Push `total` new observations in batches of `batch`, one thread and connection per
    token; returns applied mutations/s. Bodies are encoded before the clock starts."""
    bodies = []
    for start in range(0, total, batch):
        count = min(batch, total - start)
        bodies.append(json.dumps({"mutations": [sync.observation() for _ in range(count)]}).encode())
    parts = [bodies[i::len(tokens)] for i in range(len(tokens))]
    clients = [sync.Http(port, token) for token in tokens]
    for client in clients:  # authenticate and connect before the clock, as the peer's GET / does
        status, data = client.call("GET", "/api/v1/sync/manifest")
        assert status == 200, data[:300]

    def work(k: int) -> int:
        applied = 0
        for body in parts[k]:
            status, data = clients[k].call("POST", "/api/v1/sync/push", body)
            assert status == 200, data[:300]
            results = json.loads(data)["results"]
            refused = [r for r in results if r["status"] != "applied"]
            assert not refused, refused[:3]
            applied += len(results)
        return applied

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(tokens)) as pool:
        applied = sum(pool.map(work, range(len(tokens))))
    elapsed = time.perf_counter() - started
    assert applied == total, (applied, total)
    return total / elapsed


def fill(port: int, tokens: list[str], total: int) -> None:
    for start in range(0, total, FILL_CHUNK):
        push_concurrent(port, tokens[:FILL_CLIENTS], FILL_BATCH, min(FILL_CHUNK, total - start))


def pull_all(port: int, token: str, cursor: str | None = None) -> tuple[float, int, str]:
    """Page from `cursor` (None: a first sync) to the end in pages of 500; returns
    (records/s, changes received, the cursor at the end)."""
    client = sync.Http(port, token)
    got = 0
    started = time.perf_counter()
    while True:
        status, data = client.call("GET", f"/api/v1/sync/pull?limit={PAGE}" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, data[:300]
        page = json.loads(data)
        got += len(page["changes"])
        cursor = page["cursor"]
        if not page["has_more"]:
            break
    return got / (time.perf_counter() - started), got, cursor


def page_costs(url: str, port: int, tokens: list[str], reader: str, size: int, reps: int) -> dict:
    """With the store at size - 500: bring the reader up to date, push the last 500, then time
    the head page (first sync) and the tail page (those 500, from the up-to-date cursor)."""
    _rate, _got, cursor = pull_all(port, reader)
    # The tail page must be exactly the newest 500 changes of a store of `size` records.
    push_concurrent(port, tokens[:1], PAGE, PAGE)
    settle(url)
    head_ms, head_n = sync.page_ms(port, reader, None, reps)
    tail_ms, tail_n = sync.page_ms(port, reader, cursor, reps)
    assert head_n == PAGE and tail_n == PAGE, (head_n, tail_n)
    # The peer reports a page's size; a page's time means little without it.
    _status, data = sync.Http(port, reader).call("GET", f"/api/v1/sync/pull?limit={PAGE}&cursor={cursor}")
    print(f"  page of {PAGE} @{size:,}: head {head_ms:.1f} ms, tail {tail_ms:.1f} ms ({len(data) / 1024:.0f} KiB)",
          flush=True)
    return {(size, "head"): head_ms, (size, "tail"): tail_ms}


def start_production_server(port: int, workers: int) -> subprocess.Popen:
    """gunicorn as deploy/ runs it: its shipped settings (deploy/gunicorn.conf.py: sync
    workers, access log on stdout, kept here in var/peers/gunicorn.log as a log collector
    would), DEBUG off, the project's own URLs, the HTTPS settings on with the header nginx adds
    (sync.BEHIND_TLS). Only the address and the worker count are set."""
    os.environ.update(FIELDSYNC_URLCONF="fieldsync.urls", FIELDSYNC_HTTPS="true",
                      GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS=str(workers))
    sync.BEHIND_TLS = True
    VAR.mkdir(parents=True, exist_ok=True)
    log = (VAR / "gunicorn.log").open("wb")
    proc = subprocess.Popen([str(ROOT / ".venv/bin/gunicorn"), "-c", str(ROOT / "deploy/gunicorn.conf.py"),
                             "fieldsync.wsgi"], cwd=ROOT, env=os.environ.copy(), stdout=log, stderr=log)
    for _ in range(200):
        status = None
        try:
            status, _data = sync.Http(port).call("GET", "/healthz")
        except OSError:
            time.sleep(0.1)
        if status == 200:
            return proc
    proc.kill()
    raise SystemExit(f"gunicorn did not start; see {VAR / 'gunicorn.log'}")


def single_pushes(port: int, token: str, reps: int) -> float:
    """One new observation per push, one after the other from one handheld, as a warden
    saving records online: the median round trip in ms."""
    client = sync.Http(port, token)
    times = []
    for i in range(reps + 5):
        body = json.dumps({"mutations": [sync.observation()]}).encode()
        started = time.perf_counter()
        status, data = client.call("POST", "/api/v1/sync/push", body)
        elapsed = (time.perf_counter() - started) * 1000
        assert status == 200 and json.loads(data)["results"][0]["status"] == "applied", data[:300]
        if i >= 5:  # the first few warm this connection's worker
            times.append(elapsed)
    return statistics.median(times)


def run_fieldsync(args, sizes: list[int]) -> dict:
    small, big = sizes
    url = sync.bench_database_url("_bench_peers")
    sync.setup_environment(url)
    # One run enrols a handful of devices from one address; the default rate is per minute.
    os.environ["SYNC_ENROL_RATE"] = "10000/min"
    sync.recreate_database(url)
    sync.seed({"busy_wardens": max(CLIENTS), "pcso_reader": True})
    from django.db import connections

    connections.close_all()  # the seeding connection would sit idle on a shared cluster all run
    port = sync.free_port()
    server = start_production_server(port, args.workers)
    result = {"doc_bytes": len(json.dumps(sync.observation()).encode()), "ingest": {}, "page": {}}
    try:
        tokens = [sync.enrol(port, f"busy_{i}") for i in range(1, max(CLIENTS) + 1)]
        reader = sync.enrol(port, "busy_reader")
        pcso = sync.enrol(port, "busy_pcso")

        # Untimed pass, as the peer's warm-up: every gunicorn worker imports, connects, plans.
        fill(port, tokens, small)
        pull_all(port, reader)
        for batch in BATCHES:
            for clients in CLIENTS:
                rates = []
                for _ in range(args.runs):
                    reset_store(url)
                    rates.append(push_concurrent(port, tokens[:clients], batch, small))
                result["ingest"][(batch, clients)] = statistics.median(rates)
                print(f"  ingest batch={batch} clients={clients}: {' '.join(f'{r:,.0f}' for r in rates)} /s",
                      flush=True)

        reset_store(url)
        fill(port, tokens, small - PAGE)
        result["page"].update(page_costs(url, port, tokens, reader, small, args.reps))
        rates = []
        for _ in range(args.runs):
            rate, got, _cursor = pull_all(port, reader)
            assert got == small, (got, small)
            rates.append(rate)
        result["feed"] = statistics.median(rates)
        print(f"  feed through {small:,}: {' '.join(f'{r:,.0f}' for r in rates)} records/s", flush=True)
        # The same first sync by a PCSO: police staff reading the council's records, whose
        # personal fields are left out of every change (the redacted pull path).
        rates = []
        for _ in range(args.runs):
            rate, got, _cursor = pull_all(port, pcso)
            assert got == small, (got, small)
            rates.append(rate)
        result["feed_redacted"] = statistics.median(rates)
        print(f"  feed through {small:,}, redacted (PCSO): {' '.join(f'{r:,.0f}' for r in rates)} records/s",
              flush=True)
        result["single_ms"] = single_pushes(port, tokens[0], args.singles)
        print(f"  single-mutation push p50: {result['single_ms']:.2f} ms", flush=True)

        fill(port, tokens, big - small - PAGE)
        result["page"].update(page_costs(url, port, tokens, reader, big, args.reps))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return result


# --- the table ------------------------------------------------------------------------------

def table(pouch: dict, fs: dict, sizes: list[int]) -> list[tuple[str, str, str, str]]:
    rows = []
    for batch in BATCHES:
        for clients in CLIENTS:
            p, f = pouch["ingest"][(batch, clients)], fs["ingest"][(batch, clients)]
            rows.append((f"ingest batch {batch}, {clients} client{'s' if clients > 1 else ''} (docs/s)",
                         f"{p:,.0f}", f"{f:,.0f}", f"{f / p:.2f}x"))
    p, f = pouch["feed"], fs["feed"]
    rows.append((f"feed: all of {sizes[0]:,}, pages of {PAGE} (docs/s)", f"{p:,.0f}", f"{f:,.0f}", f"{f / p:.2f}x"))
    f = fs["feed_redacted"]
    rows.append(("  the same, a reader whose fields are redacted (PCSO)", f"{p:,.0f}", f"{f:,.0f}", f"{f / p:.2f}x"))
    for where in ("head", "tail"):
        for size in sizes:
            p, f = pouch["page"][(size, where)], fs["page"][(size, where)]
            rows.append((f"1 page of {PAGE}, {where}, store {size:,} (ms)", f"{p:.1f}", f"{f:.1f}", f"{p / f:.2f}x"))
        # How the cost of a page grows with the store: the claim is that it does not.
        p = pouch["page"][(sizes[1], where)] / pouch["page"][(sizes[0], where)]
        f = fs["page"][(sizes[1], where)] / fs["page"][(sizes[0], where)]
        rows.append((f"  {where} page, store {sizes[1]:,} / {sizes[0]:,}", f"{p:.2f}x", f"{f:.2f}x", ""))
    rows.append(("single-mutation push, one after another, p50 (ms)", "", f"{fs['single_ms']:.2f}", ""))
    return rows


# Issue #20's targets on this machine, one client: (figure, how it is read off the run, target).
TARGETS = (
    ("push of 500, 1 client", lambda p, f: f["ingest"][(500, 1)] / p["ingest"][(500, 1)], 1.25, "x PouchDB"),
    ("first sync, same organisation", lambda p, f: f["feed"] / p["feed"], 1.5, "x PouchDB"),
    ("first sync, redacted (PCSO)", lambda p, f: f["feed_redacted"] / p["feed"], 1.5, "x PouchDB"),
)


def print_targets(pouch: dict, fs: dict) -> None:
    print("\ntargets (issue #20):")
    for name, figure, target, unit in TARGETS:
        value = figure(pouch, fs)
        print(f"  {name:<32} {value:6.2f}{unit}  target >= {target}{unit}  {'met' if value >= target else 'NOT met'}")
    single = fs["single_ms"]
    print(f"  {'single-mutation push p50':<32} {single:6.2f} ms  target < 5 ms  {'met' if single < 5 else 'NOT met'}")


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    header = ("shape", "PouchDB", "fieldsync", "ratio")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]

    def line(cells) -> str:  # the shape left-aligned, the figures right-aligned
        figures = [f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([f"{cells[0]:<{widths[0]}}", *figures])

    print(line(header))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run: a smoke run")
    parser.add_argument("--sizes", help="N,BIG: records per ingest run and feed, and the two page store sizes "
                                        "(default 20000,200000; --quick 2000,10000)")
    parser.add_argument("--runs", type=int, help="runs per ingest and feed figure, median kept (default 3; --quick 1)")
    parser.add_argument("--reps", type=int, help="repetitions of a page timing (default 15; --quick 5)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (deploy/gunicorn.conf.py otherwise)")
    parser.add_argument("--singles", type=int, default=200, help="single-mutation pushes timed for the p50")
    parser.add_argument("--peers-dir", default=str(ROOT.parent / "shared" / "peers"),
                        help="the shared peers directory (default ../shared/peers from the repo)")
    parser.add_argument("--json", help="also write both sides' figures here")
    args = parser.parse_args()
    sizes = [int(x) for x in (args.sizes or ("2000,10000" if args.quick else "20000,200000")).split(",")]
    args.runs = args.runs or (1 if args.quick else 3)
    args.reps = args.reps or (5 if args.quick else 15)
    # The peer's bench.py labels page figures by thousands, and a store must hold more than
    # the tail page it is measured with.
    if len(sizes) != 2 or sizes[0] < 1000 or sizes[1] // 1000 <= sizes[0] // 1000:
        parser.error("--sizes takes N,BIG with 1000 <= N and BIG at least 1000 more than N")
    pouch_dir = Path(args.peers_dir).resolve() / "pouchdb"
    if not (pouch_dir / "bench.py").is_file():
        parser.error(f"no PouchDB peer in {pouch_dir} (see --peers-dir)")

    print(f"fieldsync vs PouchDB Server — {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
          f"sizes {sizes[0]:,} / {sizes[1]:,}, runs {args.runs}, reps {args.reps}", flush=True)
    print("\n== PouchDB Server (its own bench.py)", flush=True)
    pouch = run_pouchdb(pouch_dir, args, sizes)
    print(f"\n== fieldsync (gunicorn -c deploy/gunicorn.conf.py, {args.workers} workers, DEBUG off)", flush=True)
    fs = run_fieldsync(args, sizes)

    print(f"\nside by side (load now {os.getloadavg()[0]:.2f}; ratio = times faster fieldsync is; "
          f"doc ~{pouch['doc_bytes']} bytes PouchDB, mutation ~{fs['doc_bytes']} bytes fieldsync)")
    rows = table(pouch, fs, sizes)
    print_table(rows)
    print_targets(pouch, fs)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"sizes": sizes, "runs": args.runs, "reps": args.reps, "rows": rows, "pouchdb_raw": pouch["raw"]},
            indent=1))


if __name__ == "__main__":
    main()
