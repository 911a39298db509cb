"""Pull: the changes in a device's scope after its cursor, paged.

The cursor holds a position per scope key: (xid, seq) of the last change delivered.
Pages read only changes whose writing transaction id is below the oldest transaction
still running (`pg_snapshot_xmin`): every transaction below it has finished, and no
later transaction can take a smaller id, so a change that committed after a
later-numbered one is still ahead of every cursor (see docs/sync.md). Each key is an
index range scan, so a page costs what it returns, not the size of the store.

What a change says is decided when the page is built, from the record's current state:
`upsert` if the device may hold it (redacted for this user), `delete` for a tombstone,
`evict` otherwise. So scope changes (an area removed, a record moved away, the window
passed) need no special entries: the rows of keys the device leaves are replayed as
evictions, and records ageing out of the window are evicted by time.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from . import db, registry, rows
from .errors import SyncError
from .push import record_view

CURSOR_VERSION = 1
MAX_SEQ = 2**63 - 1


@dataclass
class Cursor:
    """Per-key positions, per-key eviction progress for keys left, and the window edge
    the device has been evicted through."""

    keys: dict[str, list[int]]
    leaving: dict[str, list[int]]
    window_edge: str | None
    ageing: dict[str, list] | None = None
    # True until the first sync's last page: evictions are pointless before then.
    initial: bool = False

    def encode(self, device_id) -> str:
        body = orjson.dumps({
            "v": CURSOR_VERSION, "d": str(device_id), "k": self.keys, "l": self.leaving,
            "w": self.window_edge, "a": self.ageing or {}, "i": self.initial,
        })
        mac = hmac.new(_cursor_key(), body, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, device_id) -> Cursor:
        gone = SyncError("resync_required", "This cursor can no longer be served; sync from scratch.", status_code=410)
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            raise gone from None
        mac, body = raw[:16], raw[16:]
        if len(raw) < 17 or not hmac.compare_digest(mac, hmac.new(_cursor_key(), body, hashlib.sha256).digest()[:16]):
            raise gone
        data = orjson.loads(body)
        if data.get("v") != CURSOR_VERSION or data.get("d") != str(device_id):
            raise gone
        return cls(keys=data["k"], leaving=data["l"], window_edge=data["w"], ageing=data.get("a") or {},
                   initial=bool(data.get("i")))


def _cursor_key() -> bytes:
    return hashlib.sha256(b"fieldsync.pull-cursor:" + settings.SECRET_KEY.encode()).digest()


# The oldest transaction still running, other than our own (a pull inside a larger
# transaction sees its own writes); with none running, the next id to be assigned.
_HORIZON_SQL = """
SELECT coalesce(
    (SELECT min(x::text::bigint) FROM pg_snapshot_xip(pg_current_snapshot()) AS x
     WHERE x IS DISTINCT FROM pg_current_xact_id_if_assigned()),
    pg_snapshot_xmax(pg_current_snapshot())::text::bigint)
"""

_FORWARD_SQL = """
(SELECT record_type, record_id, scope_key, xid, seq FROM sync_change
 WHERE scope_key = %s AND (xid, seq) > (%s, %s) AND xid < %s {window}
 ORDER BY xid, seq LIMIT %s)
"""

_AGEING_SQL = """
SELECT record_type, record_id, changed_at FROM sync_change
WHERE scope_key = %s AND changed_at >= %s AND changed_at < %s
  AND (changed_at, record_id) > (%s::timestamptz, %s::uuid)
ORDER BY changed_at, record_id LIMIT %s
"""


def pull_changes(*, user, device, cursor_token: str | None, limit: int) -> dict:
    """One page of changes for a device, and the cursor for the next."""
    cursor = Cursor({}, {}, None, initial=True) if not cursor_token else Cursor.decode(cursor_token, device.pk)
    first_sync = cursor.initial
    now = timezone.now()
    window_start = now - timedelta(days=settings.SYNC_WINDOW_DAYS)
    scope = _device_scope(user)

    # One snapshot for the horizon and every read, so they agree.
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        with db.cursor() as c:
            if outermost:
                c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            c.execute(_HORIZON_SQL)
            horizon = c.fetchone()[0]
        picked: list[tuple[str, object]] = []
        seen: set[tuple[str, object]] = set()
        has_more = False

        def take(type_name: str, record_id) -> bool:
            if (type_name, record_id) not in seen:
                if len(picked) >= limit:
                    return False
                seen.add((type_name, record_id))
                picked.append((type_name, record_id))
            return True

        # 1. Keys the device no longer follows: replay their rows as (probable) evictions.
        for key in list(cursor.keys):
            if key not in scope:
                cursor.leaving[key] = cursor.keys.pop(key) + [0, 0]
        for key, (end_x, end_s, at_x, at_s) in list(cursor.leaving.items()):
            if first_sync:
                break
            with db.cursor() as c:
                c.execute(
                    "SELECT record_type, record_id, xid, seq FROM sync_change WHERE scope_key = %s "
                    "AND (xid, seq) > (%s, %s) AND (xid, seq) <= (%s, %s) ORDER BY xid, seq LIMIT %s",
                    [key, at_x, at_s, end_x, end_s, limit - len(picked) + 1],
                )
                found = c.fetchall()
            done = True
            for type_name, record_id, xid, seq in found:
                if not take(type_name, record_id):
                    done = False
                    break
                cursor.leaving[key] = [end_x, end_s, xid, seq]
            if done:
                del cursor.leaving[key]
            else:
                has_more = True

        # 2. Records of windowed keys whose last change slipped out of the window.
        edge = window_start.isoformat()
        if not first_sync and cursor.window_edge and not has_more:
            previous_edge = datetime.fromisoformat(cursor.window_edge)
            ageing = cursor.ageing or {}
            for key, windowed in scope.items():
                if not windowed or key not in cursor.keys:
                    continue
                after_at, after_id = ageing.get(key, [cursor.window_edge, "00000000-0000-0000-0000-000000000000"])
                with db.cursor() as c:
                    c.execute(_AGEING_SQL, [key, previous_edge, window_start, after_at, after_id,
                                            limit - len(picked) + 1])
                    found = c.fetchall()
                complete = True
                for type_name, record_id, changed_at in found:
                    if not take(type_name, record_id):
                        complete = False
                        break
                    ageing[key] = [changed_at.isoformat(), str(record_id)]
                if not complete:
                    has_more = True
                    break
                ageing.pop(key, None)
            cursor.ageing = ageing if has_more else {}
        if not has_more:
            cursor.window_edge = edge

        # 3. Forward changes on every key in scope, merged in (xid, seq) order.
        room = limit - len(picked)
        if room > 0 and scope:
            parts, params = [], []
            for key, windowed in scope.items():
                x, s = cursor.keys.get(key, [0, 0])
                # Windowed keys skip what is already out of the window; what slips out
                # later is evicted by step 2.
                window = "AND changed_at >= %s" if windowed else ""
                parts.append(_FORWARD_SQL.format(window=window))
                params += [key, x, s, horizon] + ([window_start] if windowed else []) + [room + 1]
            sql = " UNION ALL ".join(parts) + " ORDER BY xid, seq LIMIT %s"
            with db.cursor() as c:
                c.execute(sql, [*params, room + 1])
                found = c.fetchall()
            if len(found) > room:
                has_more = True
                found = found[:room]
            for type_name, record_id, key, xid, seq in found:
                take(type_name, record_id)
                cursor.keys[key] = [xid, seq]
        elif room <= 0:
            has_more = True
        if not has_more:
            # Everything below the horizon has been delivered on every key: start the
            # next pull just below it, so it never re-scans what this one passed.
            for key in scope:
                if tuple(cursor.keys.get(key, (0, 0))) < (horizon - 1, MAX_SEQ):
                    cursor.keys[key] = [horizon - 1, MAX_SEQ]
        changes = _build_changes(user, picked, window_start, first_sync)
        cursor.initial = first_sync and has_more

    _touch(device, now)
    return {
        "changes": changes,
        "cursor": cursor.encode(device.pk),
        "has_more": has_more,
        "server_time": now.isoformat(),
    }


def _device_scope(user) -> dict[str, bool]:
    scope: dict[str, bool] = {}
    for rtype in registry.all_types():
        scope.update(rtype.policy.device_scope(user))
    return scope


def _build_changes(user, picked, window_start, first_sync: bool) -> list[dict]:
    by_type: dict[str, list] = defaultdict(list)
    for type_name, record_id in picked:
        by_type[type_name].append(record_id)
    loaded: dict[tuple[str, object], dict] = {}
    for type_name, ids in by_type.items():
        rtype = registry.get(type_name)
        found = rows.load_rows(rtype, ids)
        enrich = getattr(rtype.policy, "enrich", None)
        if enrich:
            enrich(list(found.values()))
        for record_id, row in found.items():
            loaded[(type_name, record_id)] = row
    changes = []
    for type_name, record_id in picked:
        rtype = registry.get(type_name)
        row = loaded.get((type_name, record_id))
        if row is None:
            continue
        if row.get("deleted_at"):
            changes.append({"type": type_name, "id": str(record_id), "op": "delete", "version": row["version"]})
        elif rtype.policy.in_device_scope(user, row, window_start):
            view = record_view(rtype, row, user)
            changes.append({"type": type_name, "id": view["id"], "op": "upsert", "version": row["version"],
                            "data": view["data"], **{k: v for k, v in view.items() if k not in ("type", "id", "version", "data")}})
        elif not first_sync:
            changes.append({"type": type_name, "id": str(record_id), "op": "evict", "version": row["version"]})
    return changes


def _touch(device, at) -> None:
    with db.cursor() as c:
        c.execute("UPDATE sync_device SET last_pull_at = %s WHERE id = %s", [at, device.pk])
