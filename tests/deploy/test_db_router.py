"""The database router: with DATABASE_REPLICA_URL set (here: the same test database under a
second alias, opened read-only like a real replica), an aggregate selector reads from
`replica`, while writes, consultations (read and logged in one transaction) and every other
read use `default`. Run in a child process, because the replica alias exists only when the
settings are loaded with DATABASE_REPLICA_URL."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from django.core.cache import cache

from fieldsync.db_router import REPLICA, PrimaryReplicaRouter, on_replica, read_alias
from tests.sync.conftest import IN_LEIGH, IN_WIGAN, build_world, mutation, observation_data

from .stack import BASE_DIR, NOT_INHERITED, child_database_url


def probe(username: str, *, replica: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(DJANGO_SETTINGS_MODULE="fieldsync.settings", FIELDSYNC_HTTPS="false",
               DATABASE_URL=child_database_url("probe-primary"))
    if replica:
        env["DATABASE_REPLICA_URL"] = child_database_url("probe-replica")
    result = subprocess.run([sys.executable, "-m", "tests.deploy.replica_probe", username], cwd=BASE_DIR,
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def aliases(found: dict) -> set[str]:
    return {alias for alias, _ in found["queries"]}


@pytest.fixture
def committed_world(transactional_db):
    """Committed data (the child process reads it): three observations in Leigh, one in Wigan."""
    cache.clear()  # throttle counters live in Redis
    world = build_world()
    leigh, wigan = world.enrol("warden"), world.enrol("warden_wigan")
    assert all(r["status"] == "applied" for r in leigh.push(
        [mutation("observation", "create", uuid.uuid4(), observation_data(at=IN_LEIGH)) for _ in range(3)]
    )["results"])
    assert wigan.push_one(mutation("observation", "create", uuid.uuid4(), observation_data(at=IN_WIGAN)))[
        "status"] == "applied"
    return world


def test_with_a_replica_aggregates_read_the_replica_and_everything_else_the_primary(committed_world):
    found = probe("analyst", replica=True)
    areas = committed_world.areas
    assert found["aliases"] == ["default", "replica"]

    # The aggregate selector: every query on the replica, and the right numbers.
    assert aliases(found["aggregate"]) == {"replica"}
    assert found["aggregate"]["value"] == [{"area_id": areas["leigh"].pk, "n": 3},
                                           {"area_id": areas["wigan"].pk, "n": 1}]
    assert found["read_alias"] == {"outside": "default", "inside": "replica"}
    # Raw SQL selectors given using=aggregate_alias() read the replica too.
    assert aliases(found["raw_aggregate"]) == {"replica"} and found["raw_aggregate"]["value"] == 4

    # A transaction on the primary pins its reads there, even inside on_replica().
    assert aliases(found["aggregate_in_transaction"]) == {"default"}
    assert found["aggregate_in_transaction"]["value"] == found["aggregate"]["value"]
    # Reads that did not opt in stay on the primary.
    assert aliases(found["plain_read"]) == {"default"} and found["plain_read"]["value"] == 4
    # Writes go to the primary, opt-in or not.
    assert aliases(found["write_on_replica"]) == {"default"}
    assert ["default", "INSERT"] in found["write_on_replica"]["queries"]
    # A consultation (personal data read, then logged) runs wholly on the primary.
    consultation = found["consultation_on_replica"]
    assert aliases(consultation) == {"default"}
    assert consultation["value"] == 4 and found["consultations_logged"] == 1
    assert [q for _, q in consultation["queries"]].count("SELECT") >= 1
    assert ["default", "INSERT"] in consultation["queries"]

    # The replica session is read-only: a misrouted write fails instead of diverging.
    assert found["replica_read_only"] == "on"
    assert "read-only transaction" in found["replica_write"]


def test_without_a_replica_everything_reads_the_primary(committed_world):
    found = probe("analyst", replica=False)
    assert found["aliases"] == ["default"]
    for name in ("aggregate", "raw_aggregate", "aggregate_in_transaction", "plain_read", "write_on_replica",
                 "consultation_on_replica"):
        assert aliases(found[name]) == {"default"}, name
    assert found["read_alias"] == {"outside": "default", "inside": "default"}
    areas = committed_world.areas
    assert found["aggregate"]["value"] == [{"area_id": areas["leigh"].pk, "n": 3},
                                           {"area_id": areas["wigan"].pk, "n": 1}]
    assert found["raw_aggregate"]["value"] == 4 and found["plain_read"]["value"] == 4
    assert found["consultation_on_replica"]["value"] == 4 and found["consultations_logged"] == 1


def test_router_rules():
    from warden_app.models import Observation

    router = PrimaryReplicaRouter()
    assert router.db_for_write(Observation) == "default"
    with on_replica():
        assert router.db_for_write(Observation) == "default"
    assert router.allow_migrate(REPLICA, "warden_app") is False
    assert router.allow_migrate("default", "warden_app") is None
    # Outside the block the flag is gone again.
    with on_replica():
        pass
    assert read_alias() == "default"
