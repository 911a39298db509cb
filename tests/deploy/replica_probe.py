"""Child process of tests/deploy/test_db_router.py: runs selectors and services the way the
app does and prints, as JSON, which database alias each of their queries went to.

Run as `python -m tests.deploy.replica_probe <username>` with DATABASE_URL (and, for the
replica case, DATABASE_REPLICA_URL) naming the test database.
"""
from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fieldsync.settings")
django.setup()

from django.db import DatabaseError, connections, transaction  # noqa: E402
from django.db.models import Count  # noqa: E402

from fieldsync.db_router import aggregate_alias, on_replica, read_alias  # noqa: E402
from warden_app.models import AccessLogEntry, Observation, User  # noqa: E402
from warden_app.models.access_log import AccessAction  # noqa: E402
from warden_app.services.access_log import access_log_records  # noqa: E402

queries: list[list[str]] = []


def recorder(alias: str):
    def wrapper(execute, sql, params, many, context):
        queries.append([alias, sql.split(None, 1)[0].upper()])
        return execute(sql, params, many, context)

    return wrapper


@on_replica()
def counts_by_area() -> list[dict]:
    """The shape of an analyst aggregate selector: counts, no personal data in the result."""
    return list(Observation.objects.values("area_id").annotate(n=Count("id")).order_by("area_id"))


def consult(user, ids) -> list[dict]:
    """The shape of a consultation: personal data read and logged in one transaction."""
    with transaction.atomic():
        rows = list(Observation.objects.filter(pk__in=ids).values("id", "persons_involved"))
        access_log_records(user=user, action=AccessAction.CONSULTATION, record_type="observation",
                           record_ids=ids, purpose="replica probe")
    return rows


def scenario(fn) -> dict:
    queries.clear()
    with ExitStack() as stack:
        for alias in connections:
            stack.enter_context(connections[alias].execute_wrapper(recorder(alias)))
        value = fn()
    return {"queries": list(queries), "value": value}


def main() -> None:
    user = User.objects.get(username=sys.argv[1])
    ids = list(Observation.objects.values_list("id", flat=True))
    out = {"aliases": sorted(connections.settings)}

    def write_on_replica():
        with on_replica():
            return access_log_records(user=user, action=AccessAction.CONSULTATION, record_type="observation",
                                      record_ids=[], purpose="write inside on_replica").pk is not None

    def consult_on_replica():
        with on_replica():
            return len(consult(user, ids))

    def aggregate_in_transaction():
        with transaction.atomic():
            return counts_by_area()

    def alias_inside():
        with on_replica():
            return read_alias()

    def raw_aggregate():
        # The `using=` convention of raw-SQL selectors (warden_app/aggregates/selectors.py).
        with connections[aggregate_alias()].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM warden_app_observation")
            return cursor.fetchone()[0]

    out["aggregate"] = scenario(counts_by_area)
    out["raw_aggregate"] = scenario(raw_aggregate)
    out["aggregate_in_transaction"] = scenario(aggregate_in_transaction)
    out["plain_read"] = scenario(lambda: Observation.objects.count())
    out["write_on_replica"] = scenario(write_on_replica)
    out["consultation_on_replica"] = scenario(consult_on_replica)
    out["read_alias"] = {"outside": read_alias(), "inside": scenario(alias_inside)["value"]}
    out["consultations_logged"] = AccessLogEntry.objects.filter(purpose="replica probe").count()
    if "replica" in connections:
        with connections["replica"].cursor() as cursor:
            cursor.execute("SHOW default_transaction_read_only")
            out["replica_read_only"] = cursor.fetchone()[0]
        try:
            Observation.objects.using("replica").filter(pk__in=ids).update(description="written to a replica")
            out["replica_write"] = "accepted"
        except DatabaseError as exc:
            out["replica_write"] = str(exc).splitlines()[0]
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
