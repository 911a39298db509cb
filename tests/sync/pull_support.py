"""Helpers for the pull tests: what a service would do to records behind the sync API
(review, ageing, moving), and a look inside cursors."""
from __future__ import annotations

import base64
import uuid
from datetime import timedelta

import orjson
from django.db import connection
from django.utils import timezone

from .conftest import IN_LEIGH, mutation, observation_data

TABLES = {"observation": "warden_app_observation", "street_audit": "warden_app_streetaudit",
          "audit_item": "warden_app_audititem"}


def cursor_body(token: str) -> dict:
    """The JSON inside a cursor (after its 16-byte MAC)."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    return orjson.loads(raw[16:])


def touch_feed(record_type: str, record_id, *, extra_keys=()) -> None:
    """Re-touch a record's feed rows on the keys it lives under now (plus `extra_keys`,
    e.g. the keys it lived under before a move), as every writing service does."""
    from fieldsync.sync import registry, rows
    from fieldsync.sync.feed import feed_touch

    rtype = registry.get(record_type)
    row = rows.load_rows(rtype, [uuid.UUID(str(record_id))])[uuid.UUID(str(record_id))]
    keys = set(rtype.policy.scope_keys(row)) | set(extra_keys)
    with connection.cursor() as c:
        c.execute("SELECT scope_key FROM sync_change WHERE record_type = %s AND record_id = %s",
                  [record_type, str(record_id)])
        keys |= {k for (k,) in c.fetchall()}
    feed_touch([(record_type, row["id"], k) for k in keys], at=timezone.now())


def review(record_id, *, reviewer, decision: str, note: str = "") -> None:
    """Record a review decision the way a review service would: a Review row, the new
    state, a new version, and the feed touched so handhelds hear of it."""
    from warden_app.models import Observation, Review

    obs = Observation.objects.get(pk=record_id)
    Review.objects.create(observation=obs, record_version=obs.version, decision=decision, note=note,
                          reviewer=reviewer)
    with connection.cursor() as c:
        c.execute("UPDATE warden_app_observation SET review_state = %s, version = version + 1, "
                  "updated_at = now() WHERE id = %s", [decision, str(record_id)])
    touch_feed("observation", record_id)


def age(record_type: str, record_ids, *, days: float) -> None:
    """Make records' last change `days` old: the record's updated_at and its feed rows."""
    at = timezone.now() - timedelta(days=days)
    age_to(record_type, record_ids, at)


def age_to(record_type: str, record_ids, at) -> None:
    ids = [str(r) for r in record_ids]
    with connection.cursor() as c:
        c.execute(f"UPDATE {TABLES[record_type]} SET updated_at = %s WHERE id = ANY(%s::uuid[])", [at, ids])
        c.execute("UPDATE sync_change SET changed_at = %s WHERE record_type = %s AND record_id = ANY(%s::uuid[])",
                  [at, record_type, ids])


def create_observations(handheld, n: int, at=IN_LEIGH, **extra) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    results = handheld.push([mutation("observation", "create", rid, observation_data(at, **extra)) for rid in ids])
    assert [r["status"] for r in results["results"]] == ["applied"] * n, results
    return ids


def ids_of(store: dict, record_type: str = "observation") -> set[str]:
    return {rid for (t, rid) in store if t == record_type}


def ops_by_id(changes: list[dict]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for change in changes:
        found.setdefault(change["id"], []).append(change["op"])
    return found


def caught_up(token: str) -> bool:
    """True when a cursor has passed every row of the feed: the pull that handed it out
    had no transaction below them still running. A pull may legitimately stop short of
    that while other transactions run (the xid horizon); the next pull gets there."""
    body = cursor_body(token)
    with connection.cursor() as c:
        c.execute("SELECT coalesce(max(xid), 0) FROM sync_change")
        top = c.fetchone()[0]
    return not body["l"] and all(position[0] >= top for position in body["k"].values())


def pull_caught_up(handheld, limit: int = 500, attempts: int = 200) -> list[dict]:
    """`pull_all`, again until the cursor has passed every feed row (a transaction of
    another session, even of another database that cannot be told apart in time, may
    hold a pull's horizon back for a moment)."""
    import time

    changes = []
    for _ in range(attempts):
        changes += handheld.pull_all(limit=limit)
        if caught_up(handheld.cursor):
            return changes
        time.sleep(0.02)
    raise AssertionError("the pull horizon never passed the feed")
