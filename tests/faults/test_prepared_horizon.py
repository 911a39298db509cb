"""The pull horizon and PREPARED transactions (two-phase commit), on a private cluster.

A prepared transaction has no session: pg_stat_activity does not show it, only
pg_prepared_xacts does, yet its xid stays in every snapshot's running list and its writes
appear when (and if) it is committed. The horizon (fieldsync/sync/pull.py) must therefore

- hold every pull below a prepared push of this database until it is committed, so that the
  push's changes, committed late, are still delivered (nothing skipped); and
- leave out a prepared transaction of another database of the cluster, which cannot write our
  feed (else one forgotten prepared transaction next door would stall every pull for ever).

max_prepared_transactions is 0 by default (on this machine's server and in CI), and changing
the machine's server is not ours to do: the test starts a throwaway cluster of its own with
max_prepared_transactions=2 (initdb, PostGIS, migrations, a small world, one gunicorn
worker), about 30-40 s in all, most of it the migrations.
"""
from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from tests.deploy.stack import BASE_DIR
from tests.sync.conftest import mutation, observation_data
from tests.sync.pull_support import cursor_body

from .support import HttpHandheld, PrivateCluster, seeded_stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

DATABASE = "fieldsync"
NEIGHBOUR = "neighbour"  # another application's database on the same cluster


@pytest.fixture
def cluster():
    private = PrivateCluster()
    try:
        private.init()
        private.start(max_prepared_transactions="2")
        private.create_database(DATABASE)
        with private.connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "{NEIGHBOUR}"')
        yield private
    finally:
        private.destroy()


@pytest.fixture
def server(cluster, tmp_path):
    with seeded_stack(tmp_path, cluster.url(DATABASE), workers=1) as stack:
        yield stack


def pull_to_end(handheld: HttpHandheld) -> list[dict]:
    changes = []
    while True:
        response = handheld.pull_page()
        assert response.status_code == 200, response.text
        body = response.json()
        changes += body["changes"]
        if not handheld.apply_page(body):
            return changes


def lowest_position(handheld: HttpHandheld) -> int:
    return min(position[0] for position in cursor_body(handheld.cursor)["k"].values())


def create(record_id: str) -> dict:
    return mutation("observation", "create", record_id, observation_data())


def test_a_prepared_push_holds_pulls_back_and_one_of_another_database_does_not(cluster, server):
    reader = HttpHandheld.enrol(server.base_url, "supervisor", "reader")
    author = HttpHandheld.enrol(server.base_url, "warden", "author")
    prepared_by = HttpHandheld.enrol(server.base_url, "warden2", "prepared")
    pull_to_end(reader)
    check = cluster.connect(DATABASE)
    try:
        # 1. A push of this database, prepared: written, holding its xid, not committed.
        held_id, late_id = str(uuid.uuid4()), str(uuid.uuid4())
        child = subprocess.run(
            [sys.executable, "-m", "tests.faults.prepare_push", "warden2", prepared_by.device_id, "held-push",
             json.dumps([create(held_id)])],
            cwd=BASE_DIR, env=server.env("fieldsync-prepare"), capture_output=True, text=True, timeout=60,
            check=False)
        assert child.returncode == 0, child.stdout + child.stderr
        prepared = json.loads(child.stdout.strip().splitlines()[-1])
        assert [r["status"] for r in prepared["results"]] == ["applied"]
        held_xid = prepared["xid"]
        # Prepared, and no session shows it: only pg_prepared_xacts does.
        assert check.execute("SELECT transaction::text::bigint, database FROM pg_prepared_xacts "
                             "WHERE gid = 'held-push'").fetchone() == (held_xid % 2**32, DATABASE)
        assert check.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_xid::text::bigint = %s",
                             [held_xid % 2**32]).fetchone()[0] == 0

        response = author.push([create(late_id)])  # commits, with an xid above the prepared one
        assert response.status_code == 200 and response.json()["results"][0]["status"] == "applied", response.text
        late_xid = check.execute("SELECT min(xid) FROM sync_change WHERE record_id = %s", [late_id]).fetchone()[0]
        assert late_xid > held_xid
        assert pull_to_end(reader) == [], "a change above a prepared push is held back"
        assert lowest_position(reader) < held_xid, "no cursor moves past a prepared push"
        # The overlap: the pull above ran while the push was still prepared.
        assert check.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'held-push'").fetchone()[0] == 1

        check.execute("COMMIT PREPARED 'held-push'")
        assert sorted(c["id"] for c in pull_to_end(reader)) == sorted([held_id, late_id])

        # 2. A prepared transaction of another database: in our snapshots, never in our feed.
        with cluster.connect(NEIGHBOUR) as neighbour:
            neighbour.autocommit = False
            next_door = neighbour.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0]
            neighbour.execute("PREPARE TRANSACTION 'next-door'")
        try:
            free_id = str(uuid.uuid4())
            response = author.push([create(free_id)])
            assert response.status_code == 200 and response.json()["results"][0]["status"] == "applied"
            assert check.execute(
                "SELECT database, %s::text::xid8 = ANY(ARRAY(SELECT pg_snapshot_xip(pg_current_snapshot()))) "
                "FROM pg_prepared_xacts WHERE gid = 'next-door'", [next_door]).fetchone() == (NEIGHBOUR, True)
            assert [c["id"] for c in pull_to_end(reader)] == [free_id]
            assert lowest_position(reader) > next_door, "the cursor moved past the other database's transaction"
            assert check.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'next-door'").fetchone()[0] == 1
        finally:
            with cluster.connect(NEIGHBOUR) as neighbour:
                neighbour.execute("ROLLBACK PREPARED 'next-door'")
    finally:
        check.close()
        for handheld in (reader, author, prepared_by):
            handheld.close()
