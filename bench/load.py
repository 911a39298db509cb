#!/usr/bin/env python
"""Load generator: simulated handhelds against a real server, then an audit of the store.

    .venv/bin/python bench/load.py --profile steady [--devices 500] [--duration 300]
    .venv/bin/python bench/load.py --profile storm  [--devices 500] [--mutations 200] [--photos 2]
    .venv/bin/python bench/load.py --profile storm --url https://sync.example --database-url postgres://…

Profiles:
  steady  a shift: each handheld records 1-20 mutations (new observations and edits of its own)
          every 5-15 s and pushes them, pulls every 30 s, loses signal now and then (its outbox
          grows, then goes in one round), uploads the odd photo.
  storm   the morning after: every handheld reconnects at the same moment with --mutations
          queued and --photos photos; the figure is the time until every outbox is empty.
Every handheld re-sends after timeouts, 5xx and 429 (honouring Retry-After), and now and then
re-sends an answered push on purpose (again, or on two connections at once).

Without --url it makes its own database (`<name>_load` beside DATABASE_URL, dropped and
migrated afresh) and serves it with gunicorn (deploy/gunicorn.conf.py, --workers workers), a
Celery worker and a Redis of their own on loopback. With --url it loads a running server; the
world (users, areas, devices) is added to that server's database (--database-url, default
DATABASE_URL) under fresh usernames, and the audit reads that database.

Prints throughput, latency per endpoint (p50/p95/p99), the error breakdown, the audit
(every mutation sent has exactly one receipt and no receipt lacks a mutation; every record
once, with the values and versions its handheld gave it; every photo stored under its hash)
and the targets. Exit status: 0 all passed, 1 the audit failed, 2 a target was missed.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# After the path is set, so the script runs from anywhere.
from bench import loadkit  # noqa: E402
from bench.sync import bench_database_url, recreate_database  # noqa: E402


def django_setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("SECRET_KEY", "load-" + "k" * 60)
    os.environ["FIELDSYNC_HTTPS"] = "false"
    os.environ.pop("DEBUG", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "fieldsync.settings"
    import django

    django.setup()


def span(text: str, kind=float) -> tuple:
    low, _, high = text.partition("-")
    return kind(low), kind(high or low)


def pixels(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def build_profile(args) -> loadkit.Profile:
    make = loadkit.steady_profile if args.profile == "steady" else loadkit.storm_profile
    overrides = {"devices": args.devices, "duration": args.duration, "mutations": args.mutations,
                 "photos": args.photos, "enrol": min(args.enrol, args.devices), "seed": args.seed}
    for name in ("pull_every", "offline_chance", "dup_chance", "photo_chance", "batch", "deadline", "drain_grace"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    if args.push_every:
        overrides["push_every"] = span(args.push_every)
    if args.changes:
        overrides["changes"] = span(args.changes, int)
    if args.offline:
        overrides["offline"] = span(args.offline)
    if args.photo_px:
        overrides["photo_px"] = pixels(args.photo_px)
    return make(**overrides)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=("steady", "storm"), default="steady")
    parser.add_argument("--devices", type=int, default=500, help="simulated handhelds (500)")
    parser.add_argument("--duration", type=float, default=300, help="steady: seconds of shift (300)")
    parser.add_argument("--mutations", type=int, default=200, help="storm: queued mutations per handheld (200)")
    parser.add_argument("--photos", type=int, default=2, help="storm: queued photos per handheld (2)")
    parser.add_argument("--enrol", type=int, default=10, help="handhelds that enrol with a password (10)")
    parser.add_argument("--areas", type=int, default=None, help="areas (default: one per ten handhelds)")
    parser.add_argument("--push-every", help="steady: seconds between rounds, e.g. 5-15")
    parser.add_argument("--changes", help="steady: mutations per round, e.g. 1-20")
    parser.add_argument("--pull-every", type=float, help="steady: seconds between pulls (30)")
    parser.add_argument("--offline-chance", type=float, help="steady: chance per round of losing signal (0.03)")
    parser.add_argument("--offline", help="steady: seconds out of signal, e.g. 20-90")
    parser.add_argument("--dup-chance", type=float, help="chance of a deliberate re-send per push (0.03)")
    parser.add_argument("--photo-chance", type=float, help="steady: share of new observations with a photo (0.02)")
    parser.add_argument("--photo-px", help="photo size, e.g. 1280x960")
    parser.add_argument("--batch", type=int, help="mutations per push (default: the manifest's max_mutations)")
    parser.add_argument("--deadline", type=float, help="storm: give up after this many seconds (600)")
    parser.add_argument("--drain-grace", type=float, help="steady: seconds after the shift to empty outboxes (300)")
    parser.add_argument("--vacuum-every", type=float, default=30.0,
                        help="seconds between the vacuums standing in for autovacuum where the server's "
                             "PostgreSQL runs without it (30; 0: none)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1,
                        help="gunicorn workers of the server started here (2 x cores + 1)")
    parser.add_argument("--celery-concurrency", type=int, default=1)
    parser.add_argument("--url", help="load this running server instead of starting one")
    parser.add_argument("--database-url", help="with --url: the server's database (default DATABASE_URL)")
    parser.add_argument("--cafile", help="with --url: CA bundle to verify its certificate")
    parser.add_argument("--media-root", type=Path, help="with --url: the server's MEDIA_ROOT, to check photo files")
    return parser.parse_args(argv)


def raise_open_files_limit() -> None:
    """Each handheld holds a socket, two during a parallel re-send: 500 handhelds pass the
    common soft limit of 1024 descriptors."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    raise_open_files_limit()
    profile = build_profile(args)
    started = time.perf_counter()
    if args.url:
        django_setup(args.database_url or os.environ.get("DATABASE_URL", ""))
        world = loadkit.world_prepare(devices=profile.devices, enrol=profile.enrol, areas=args.areas)
        print(f"world {world.tag}: {profile.devices} handhelds ready in {time.perf_counter() - started:.1f} s",
              flush=True)
        result = loadkit.run_load(args.url.rstrip("/"), world, profile, verify=args.cafile or True,
                                  media_root=args.media_root, server=args.url, vacuum_every=args.vacuum_every)
    else:
        url = bench_database_url("_load")
        recreate_database(url)
        django_setup(url)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        world = loadkit.world_prepare(devices=profile.devices, enrol=profile.enrol, areas=args.areas)
        print(f"database {urlsplit(url).path.lstrip('/')} migrated and {profile.devices} handhelds ready in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        from django.db import connection

        connection.close()  # idle until the audit; the pull horizon must not wait on it
        with tempfile.TemporaryDirectory(prefix="fieldsync-load-") as tmp:
            stack = loadkit.Stack(database_url=url, workers=args.workers, work_dir=Path(tmp),
                                  celery_concurrency=args.celery_concurrency)
            try:
                stack.start()
                result = loadkit.run_load(stack.base_url, world, profile, media_root=stack.media_root,
                                          server=stack.describe(), stack=stack, vacuum_every=args.vacuum_every)
            finally:
                stack.stop()
    print(result.text)
    if not result.audit.passed:
        return 1
    return 0 if result.targets_passed else 2


if __name__ == "__main__":
    sys.exit(main())
