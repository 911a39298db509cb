"""Pull: the changes in a device's scope after its cursor, paged.

The cursor holds a position per scope key: (xid, seq) of the last change delivered.
Pages read only changes whose writing transaction id is below the oldest transaction
still running in this database (`pg_snapshot_xmin`, less transactions of other
databases, which cannot write here): every transaction below it has finished, and no
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from fieldsync import db
from fieldsync.errors import ApiError

from . import registry, rows
from .push import device_touch

# 2: positions carry the key's window flag; keys left are replayed by time, not position.
CURSOR_VERSION = 2
MAX_SEQ = 2**63 - 1
NIL_ID = "00000000-0000-0000-0000-000000000000"


@dataclass
class Cursor:
    """Where a device stands.

    keys:     per followed key, [xid, seq, windowed] of the last change delivered.
    leaving:  per key the device no longer follows, [changed_at, record_id] of the last
              row replayed as a (probable) eviction; rows are replayed in time order from
              the window edge (or from the start, for an unwindowed key).
    window_edge: the window start the device has been evicted through.
    ageing:   per key, progress of evicting what slipped out of the window.
    initial:  during a first sync, the horizon of its first page (0 after it): changes
              below it cannot concern anything the device holds, so a first sync sends
              no evictions or tombstones for them.
    """

    keys: dict[str, list[int]] = field(default_factory=dict)
    leaving: dict[str, list] = field(default_factory=dict)
    window_edge: str | None = None
    ageing: dict[str, list] = field(default_factory=dict)
    initial: int = 0

    def encode(self, device_id) -> str:
        body = orjson.dumps({
            "v": CURSOR_VERSION, "d": str(device_id), "k": self.keys, "l": self.leaving,
            "w": self.window_edge, "a": self.ageing, "i": self.initial,
        })
        mac = hmac.new(_cursor_key(), body, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, device_id) -> Cursor:
        gone = ApiError("resync_required", "This cursor can no longer be served; sync from scratch.", status_code=410)
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            raise gone from None
        mac, body = raw[:16], raw[16:]
        if len(raw) < 17 or not hmac.compare_digest(mac, hmac.new(_cursor_key(), body, hashlib.sha256).digest()[:16]):
            raise gone
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise gone from None
        if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION or data.get("d") != str(device_id):
            raise gone
        return cls(keys=data["k"], leaving=data["l"], window_edge=data["w"], ageing=data.get("a") or {},
                   initial=int(data.get("i") or 0))


def _cursor_key() -> bytes:
    return hashlib.sha256(b"fieldsync.pull-cursor:" + settings.SECRET_KEY.encode()).digest()


# The oldest transaction still running, with none running the next id to be assigned
# (`xmax`: ids from there on may be running too). Left out: our own transaction, and
# transactions shown not to write our feed: those connected to another database, and
# autovacuum's (an ANALYZE holds an xid for seconds). Without this any long transaction
# anywhere on the cluster would stall every pull. Only positive evidence leaves one
# out: a transaction that ended since our snapshot, or one no view shows, keeps holding
# the horizon back for this pull (the next pull gets past it).
# Also returned: our own xid, if we have one, and the (32-bit) xids of the other
# transactions that may write here, for a pull inside a writing transaction.
_HORIZON_SQL = """
WITH here AS (SELECT oid FROM pg_database WHERE datname = current_database()),
running AS (
    SELECT backend_xid AS x,
           (datid IS NULL OR datid = (SELECT oid FROM here))
           AND backend_type IS DISTINCT FROM 'autovacuum worker' AS ours
    FROM pg_stat_activity WHERE backend_xid IS NOT NULL
    UNION ALL
    SELECT transaction, database = current_database() FROM pg_prepared_xacts
)
SELECT coalesce(
    (SELECT min(x::text::bigint) FROM pg_snapshot_xip(pg_current_snapshot()) AS x
     WHERE x IS DISTINCT FROM pg_current_xact_id_if_assigned()
       AND x::xid NOT IN (SELECT r.x FROM running r WHERE NOT r.ours)),
    pg_snapshot_xmax(pg_current_snapshot())::text::bigint),
    pg_current_xact_id_if_assigned()::text::bigint,
    ARRAY(SELECT r.x::text::bigint FROM running r WHERE r.ours)
"""


@contextmanager
def _repeatable_read(outermost: bool) -> Iterator[None]:
    """The pull's own transaction begins REPEATABLE READ: psycopg names the level in the
    BEGIN it sends with the first statement, where SET TRANSACTION would cost a round trip
    of its own. Not READ ONLY: the page's consultation log row is written in it. A pull
    inside a caller's transaction (tests) reads each statement afresh instead (committed_horizon)."""
    if not outermost:
        yield
        return
    connection.ensure_connection()
    raw = connection.connection
    previous = raw.isolation_level
    raw.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        yield
    finally:
        if not raw.closed:
            raw.isolation_level = previous


def committed_horizon(c, *, fresh: bool = False) -> tuple[int, int | None]:
    """(horizon, own xid): every change below the horizon is committed (or rolled back)
    and visible to this pull's reads, and no change can appear below it later. `fresh`:
    this is the transaction's first read of backend status."""
    if not fresh:
        # Backend status is cached for the rest of a transaction once read: read it afresh.
        c.execute("SELECT pg_stat_clear_snapshot()")
    c.execute(_HORIZON_SQL)
    horizon, own, here = c.fetchone()
    if own is None:
        return horizon, None
    # Inside a writing transaction (tests do this) we read each statement afresh, and see
    # our own rows, which may have an xid at or above `xmax`. Every transaction of this
    # database with an xid below ours got it before ours and, unless still running (and
    # so listed in `here`), has ended: we may read up to our own changes.
    low = own & 0xFFFFFFFF
    others = [own + ((x - low + 2**31) % 2**32) - 2**31 for x in here]
    return min([own + 1] + [x for x in others if x != own]), own


# Changes on one key after a position and below the horizon: an index range scan on
# (scope_key, xid, seq). Windowed keys skip what is already out of the window.
_FORWARD_SQL = """
(SELECT record_type, record_id, scope_key, xid, seq FROM sync_change
 WHERE scope_key = %s AND (xid, seq) > (%s, %s) AND xid < %s {window}
 ORDER BY xid, seq LIMIT %s)
"""

# Where a windowed key's first scan may start: below the oldest writer of a row still in
# the window there is nothing to send (an index range scan on (scope_key, changed_at)
# over the rows a first sync returns anyway), so a first sync does not walk the key's
# whole history.
# Two ways to find it, each cheap where the other is not: walk the key's first rows in xid
# order (the first one in the window is the answer: quick when the window holds most of the
# key), else read the window's range on (scope_key, changed_at) INCLUDE (xid), an index-only
# scan (quick when years of history precede the window). Left to itself, the planner walked
# the whole history in xid order, reading a million rows in bench/sync.py; OFFSET 0 keeps it
# from turning the second into that walk.
_WINDOW_HEAD = 32
_WINDOW_START_SQL = f"""
SELECT coalesce(
    (SELECT min(xid) FROM (SELECT xid, changed_at FROM sync_change WHERE scope_key = %(key)s
                           ORDER BY xid, seq LIMIT {_WINDOW_HEAD}) AS head WHERE changed_at >= %(edge)s),
    (SELECT min(xid) FROM (SELECT xid FROM sync_change WHERE scope_key = %(key)s AND changed_at >= %(edge)s
                           OFFSET 0) AS window_rows))
"""

# Rows of a key in time order, after a (changed_at, record_id) position: keys left, and
# rows slipping out of the window. An index range scan on (scope_key, changed_at).
_BY_TIME_SQL = """
SELECT record_type, record_id, changed_at FROM sync_change
WHERE scope_key = %s AND changed_at >= %s::timestamptz AND changed_at < %s::timestamptz
  AND (changed_at, record_id) > (%s::timestamptz, %s::uuid)
ORDER BY changed_at, record_id LIMIT %s
"""

# The scans of the feed above are never prepared (prepare=False): a prepared statement may
# settle on a generic plan, made without knowing whether a key is busy or quiet or where the
# window starts, and these plans depend on exactly that (tests/sync/test_pull_cost.py holds
# each one to what it returns, planned for its values). The rest of the engine's statements
# have one sensible plan, and are prepared once per connection (settings.DATABASES).

_BEGINNING = "-infinity"
_END = "infinity"


class _Page:
    """The records picked for one page, at most `limit` distinct ones, in order."""

    def __init__(self, limit: int):
        self.limit = limit
        self.picked: dict[tuple[str, object], int] = {}  # -> highest xid it was picked at

    @property
    def room(self) -> int:
        return self.limit - len(self.picked)

    def take(self, type_name: str, record_id, xid: int = 2**63 - 1) -> bool:
        key = (type_name, record_id)
        if key in self.picked:
            self.picked[key] = max(self.picked[key], xid)
            return True
        if len(self.picked) >= self.limit:
            return False
        self.picked[key] = xid
        return True


def pull_changes(*, user, device, cursor_token: str | None, limit: int) -> dict:
    """One page of changes for a device, and the cursor for the next. Each upsert's
    `data` is already JSON text (an orjson.Fragment), as it goes on the wire."""
    cursor = Cursor() if not cursor_token else Cursor.decode(cursor_token, device.pk)
    now = timezone.now()
    window_start = now - timedelta(days=settings.SYNC_WINDOW_DAYS)
    edge = window_start.isoformat()
    scope = _device_scope(user)

    # One snapshot for the horizon and every read, so they agree.
    outermost = not connection.in_atomic_block
    with _repeatable_read(outermost), transaction.atomic():
        with db.cursor() as c:
            horizon, own_xid = committed_horizon(c, fresh=outermost)
        # A pull inside a writing transaction must not pass that transaction's rows: it
        # may write more after this page (with the same xid and later sequence numbers).
        passed = horizon - 1 if own_xid is None else min(horizon, own_xid) - 1
        if not cursor_token:
            cursor.initial = horizon
            cursor.window_edge = edge
        first_horizon = cursor.initial
        first_sync = first_horizon > 0
        page = _Page(limit)
        has_more = False

        # 1. Keys the device no longer follows: replay their rows as (probable) evictions.
        for key in list(cursor.keys):
            if key not in scope:
                windowed = len(cursor.keys[key]) > 2 and cursor.keys[key][2]
                del cursor.keys[key]
                cursor.ageing.pop(key, None)
                start = cursor.window_edge if windowed and cursor.window_edge else _BEGINNING
                cursor.leaving[key] = [start, NIL_ID]
        if not first_sync:
            for key, (after_at, after_id) in list(cursor.leaving.items()):
                if page.room <= 0:
                    has_more = True
                    break
                found = _by_time(key, after_at, _END, after_at, after_id, page.room + 1)
                done = True
                for type_name, record_id, changed_at in found:
                    if not page.take(type_name, record_id):
                        done = False
                        break
                    cursor.leaving[key] = [changed_at.isoformat(), str(record_id)]
                if done:
                    del cursor.leaving[key]
                else:
                    has_more = True
                    break

        # 2. Records of windowed keys whose last change slipped out of the window since
        # the edge the device was last evicted through.
        if not first_sync and not has_more and cursor.window_edge and _at(cursor.window_edge) < window_start:
            previous_edge = cursor.window_edge
            for key, windowed in scope.items():
                if not windowed or key not in cursor.keys:
                    continue
                after_at, after_id = cursor.ageing.get(key, [previous_edge, NIL_ID])
                found = _by_time(key, previous_edge, edge, after_at, after_id, page.room + 1)
                complete = True
                for type_name, record_id, changed_at in found:
                    if not page.take(type_name, record_id):
                        complete = False
                        break
                    cursor.ageing[key] = [changed_at.isoformat(), str(record_id)]
                if not complete:
                    has_more = True
                    break
                cursor.ageing[key] = [edge, NIL_ID]  # done through the new edge
            if not has_more:
                cursor.ageing = {}
                cursor.window_edge = edge

        # 3. Forward changes on every key in scope, merged in (xid, seq) order.
        for key, windowed in scope.items():
            if key not in cursor.keys:
                cursor.keys[key] = _start_position(key, windowed, window_start, passed + 1)
            else:
                cursor.keys[key] = [*cursor.keys[key][:2], int(windowed)]
        # Steps 1 and 2 stop early only on a full page.
        has_more = True if page.room <= 0 else _forward(cursor, scope, page, horizon, window_start)
        if not has_more:
            # Everything below the horizon has been delivered on every key: start the
            # next pull just below it, so it never re-scans what this one passed.
            for key in scope:
                if tuple(cursor.keys[key][:2]) < (passed, MAX_SEQ):
                    cursor.keys[key][:2] = [passed, MAX_SEQ]
            cursor.initial = 0
        changes, consulted = _build_changes(user, page.picked, window_start, first_horizon)
        _log_consultation(user, device, consulted)

    _pull_time_record(device, now)
    return {
        "changes": changes,
        "cursor": cursor.encode(device.pk),
        "has_more": has_more,
        "server_time": now.isoformat(),
    }


# The pull's time is written after the page's transaction, in one of its own (a REPEATABLE
# READ transaction updating the device row would fail against a push of the same device
# that updated it meanwhile). It is a status field, so its commit does not wait for the WAL
# to reach disk: a crash can only leave the previous pull's time. The setting is local to
# this statement's own transaction, taken before the update in the same round trip.
_PULL_TIME_SQL = """
WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
UPDATE sync_device SET last_pull_at = %s FROM relaxed WHERE id = %s
"""


def _pull_time_record(device, at: datetime) -> None:
    if connection.in_atomic_block:
        device_touch(device, "last_pull_at", at)  # inside a caller's transaction: its commit
        return
    with db.cursor() as c:
        c.execute(_PULL_TIME_SQL, [at, device.pk])


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def _by_time(key: str, since, until, after_at, after_id, limit: int) -> list[tuple]:
    with db.cursor() as c:
        c.execute(_BY_TIME_SQL, [key, since, until, after_at, after_id, limit], prepare=False)
        return c.fetchall()


def _start_position(key: str, windowed: bool, window_start, horizon: int) -> list[int]:
    """Where a key the device starts following is scanned from (`horizon`: the lowest
    xid that may still write rows, own transaction included)."""
    if not windowed:
        return [0, 0, 0]
    with db.cursor() as c:
        c.execute(_WINDOW_START_SQL, {"key": key, "edge": window_start}, prepare=False)
        oldest = c.fetchone()[0]
    # Rows below both the horizon and the oldest in-window writer are committed, visible
    # and out of the window; rows rewritten later get an xid at or above the horizon.
    start = horizon if oldest is None else min(oldest, horizon)
    return [start - 1, MAX_SEQ, 1]


def _forward(cursor: Cursor, scope: dict[str, bool], page: _Page, horizon: int, window_start) -> bool:
    """Take forward changes in (xid, seq) order until the page holds `limit` records;
    True if more are waiting. Rows of records already on the page (a record lives under
    several keys, written together) are consumed without taking room."""
    while True:
        batch = page.room + 1
        parts, params = [], []
        for key, windowed in scope.items():
            x, s = cursor.keys[key][:2]
            parts.append(_FORWARD_SQL.format(window="AND changed_at >= %s" if windowed else ""))
            params += [key, x, s, horizon] + ([window_start] if windowed else []) + [batch]
        sql = "SELECT * FROM (" + " UNION ALL ".join(parts) + ") AS f ORDER BY xid, seq LIMIT %s"
        with db.cursor() as c:
            c.execute(sql, [*params, batch], prepare=False)
            found = c.fetchall()
        for type_name, record_id, key, xid, seq in found:
            if not page.take(type_name, record_id, xid):
                return True
            cursor.keys[key][:2] = [xid, seq]
        if len(found) < batch:
            return False


def _device_scope(user) -> dict[str, bool]:
    scope: dict[str, bool] = {}
    for rtype in registry.all_types():
        scope.update(rtype.policy.device_scope(user))
    return scope


def _build_changes(user, picked: dict[tuple[str, object], int], window_start,
                   first_horizon: int) -> tuple[list[dict], dict[str, list[str]]]:
    """The page's changes from the records' current state, and by type the ids of the
    records handed over with personal fields in them. During a first sync
    (`first_horizon` > 0), a record out of scope or deleted whose rows are all below the
    first page's horizon cannot be on the device: nothing is sent for it."""
    by_type: dict[str, list] = defaultdict(list)
    for type_name, record_id in picked:
        by_type[type_name].append(record_id)
    loaded: dict[tuple[str, object], tuple] = {}
    kinds: dict[str, _TypeView] = {}
    for type_name, ids in by_type.items():
        kind = kinds[type_name] = _TypeView(registry.get(type_name))
        views = rows.load_views(kind.rtype, ids, kind.policy.personal_fields)
        kind.policy.enrich([view[0] for view in views.values()])
        for record_id, view in views.items():
            loaded[(type_name, record_id)] = view
    changes: list[dict] = []
    consulted: dict[str, list[str]] = defaultdict(list)
    for key, xid in picked.items():
        found = loaded.get(key)
        if found is None:
            continue
        type_name = key[0]
        kind = kinds[type_name]
        row, record_id, common, personal = found
        unseen = first_horizon > 0 and xid < first_horizon
        if row["deleted_at"]:
            if not unseen:
                changes.append({"type": type_name, "id": record_id, "op": "delete", "version": row["version"]})
        elif kind.policy.in_device_scope(user, row, window_start):
            data, shows_personal = kind.data(row, common, personal, kind.policy.visible_fields(user, row))
            changes.append({"type": type_name, "id": record_id, "op": "upsert", "version": row["version"],
                            "data": data, **kind.policy.server_view(row)})
            if shows_personal:
                consulted[type_name].append(record_id)
        elif not unseen:
            changes.append({"type": type_name, "id": record_id, "op": "evict", "version": row["version"]})
    return changes, consulted


class _TypeView:
    """What a page needs of one record type, looked up once per page."""

    def __init__(self, rtype):
        self.rtype = rtype
        self.policy = rtype.policy
        self.personal = rows.view_plan(rtype, rtype.policy.personal_fields)[2]
        self.has_form = rows.has_form(rtype)

    def data(self, row, common: str, personal: tuple, visible: frozenset[str]) -> tuple[orjson.Fragment, bool]:
        """The record's `data` as JSON text: the form version, the fields every reader
        sees, and the personal fields this reader may see (the others are left out, as
        redacted); and whether a personal field shown holds anything."""
        parts = []
        if self.has_form:
            form_id = row["form_id"]
            parts.append('"form_version":' + ("null" if form_id is None else str(self.policy.form_version_of(form_id))))
        if len(common) > 2:
            parts.append(common[1:-1])
        shows = False
        for i, name in enumerate(self.personal):
            if name in visible:
                parts.append(f'"{name}":{personal[2 * i]}')
                shows = shows or personal[2 * i + 1]
        return orjson.Fragment("{" + ",".join(parts) + "}"), shows


def _log_consultation(user, device, consulted: dict[str, list[str]]) -> None:
    """Tell the domain which records this page hands over with personal fields in them,
    inside the pull's transaction, so the log row commits before the data leaves."""
    for type_name, ids in consulted.items():
        registry.get(type_name).policy.record_consulted(user=user, device=device, record_ids=ids)
