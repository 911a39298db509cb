"""Which database a query goes to: always the primary, except analyst aggregates on the replica.

The replica (`DATABASE_REPLICA_URL`, alias ``replica``) is for reads whose *result* holds no
personal data — counts by area, hotspot classes, anything a partner viewer could be shown.
Such a read needs no consultation entry in the s.62 log, and a few seconds of replication lag
cannot change its meaning. A selector opts in explicitly, in one place::

    @on_replica()
    def counts_by_area(*, boundary_set) -> list[dict]:
        return list(Observation.objects.filter(...).values("area").annotate(n=Count("id")))

Everything else reads from ``default``: writes, reads of records, and every read that must be
logged as a consultation, because that read and its log row are one transaction on the primary
(inside ``transaction.atomic()`` on ``default`` this router never hands out the replica, so a
consultation cannot be read from a copy it does not log into). Without a replica configured,
``on_replica()`` changes nothing.

Querysets are lazy: evaluate them (``list()``, ``.count()``) inside the block. Selectors in raw
SQL that take a ``using`` alias (warden_app/aggregates) are called with
``using=aggregate_alias()``, the same decision made once by the caller.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

REPLICA = "replica"

# Per thread and per asyncio task, so one request's opt-in never leaks into another's.
_replica_reads: ContextVar[bool] = ContextVar("fieldsync_replica_reads", default=False)


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


@contextmanager
def on_replica() -> Iterator[None]:
    """Reads inside go to the replica (when there is one): only for results without personal data.

    Also usable as a decorator on a selector function.
    """
    token = _replica_reads.set(True)
    try:
        yield
    finally:
        _replica_reads.reset(token)


def read_alias() -> str:
    """The alias a read issued now goes to (for raw SQL: ``connections[read_alias()]``)."""
    if not (_replica_reads.get() and replica_configured()):
        return DEFAULT_DB_ALIAS
    # A transaction on the primary pins its reads there: it may be logging a consultation,
    # and it must see its own writes, which the replica has not received yet.
    if connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return DEFAULT_DB_ALIAS
    return REPLICA


def aggregate_alias() -> str:
    """For selectors that take ``using=``: the alias for a read whose result holds no personal
    data — ``replica`` when one is configured (and no transaction on the primary is open),
    else ``default``."""
    with on_replica():
        return read_alias()


class PrimaryReplicaRouter:
    """Django database router (settings.DATABASE_ROUTERS)."""

    def db_for_read(self, model, **hints) -> str | None:
        alias = read_alias()
        # None keeps Django's own choice (the primary, or the database an instance came from).
        return REPLICA if alias == REPLICA else None

    def db_for_write(self, model, **hints) -> str:
        # Even an instance read from the replica is saved on the primary.
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints) -> bool | None:
        # The replica is a copy of the primary: rows from either may be related.
        if {obj1._state.db, obj2._state.db} <= {DEFAULT_DB_ALIAS, REPLICA}:
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints) -> bool | None:
        # The replica receives the schema by replication; migrating it directly is an error.
        return False if db == REPLICA else None
