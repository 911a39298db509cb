"""A push's cost grows with its batch, not with its sender's history. Measured as in
test_pull_cost.py: the engine's statements on the receipts ledger run under EXPLAIN ANALYZE
first, and the rows each examines are counted."""
from __future__ import annotations

import pytest
from django.db import connection

from .pull_support import create_observations
from .test_pull_cost import measured

HISTORY = 20_000
BATCH = 50

pytestmark = pytest.mark.slow


def add_receipts(handheld, n: int, *, users: int = 1) -> None:
    """`n` receipts of earlier pushes, written in bulk: by the handheld's user, or spread
    over `users` other (made-up) user ids. The ledger has no per-row user check."""
    user = "d.user_id" if users == 1 else f"100000 + g %% {users}"
    with connection.cursor() as c:
        c.execute(
            "INSERT INTO sync_receipt (user_id, device_id, mutation_id, record_type, record_id, op, payload_hash, "
            "status, result, created_at) "
            f"SELECT {user}, d.id, gen_random_uuid(), 'observation', gen_random_uuid(), 'create', "
            "md5(g::text) || md5(g::text), 'applied', '{}'::jsonb, now() - interval '1 day' "
            "FROM sync_device d, generate_series(1, %s) g WHERE d.id = %s",
            [n, handheld.device_id],
        )


def test_the_exactly_once_check_reads_the_batch_not_the_senders_history(world):
    """Statistics that show many users with a few receipts each, then a warden with a long
    history (a busy warden, or one between two autovacuum runs): the check for earlier
    answers still probes one receipt per mutation id. Asked as `mutation_id = ANY(...)`,
    the planner read all 20,000 of the warden's receipts and filtered them."""
    warden = world.enrol("warden")
    create_observations(warden, 5)
    add_receipts(warden, 3_000, users=300)
    with connection.cursor() as c:
        c.execute("ANALYZE sync_receipt")
    add_receipts(warden, HISTORY)

    with measured(tables=("sync_receipt",)) as plans:
        create_observations(warden, BATCH)
    [check] = [plan for sql, plan in plans.statements if "payload_hash" in sql]
    assert plans.examined("", check) <= 2 * BATCH, plans.report()
