"""A pull's cost grows with the changes it returns, not with the size of the store
(protocol section 5). Measured without clocks: every statement a pull runs against the
feed and the record table is run first under EXPLAIN (ANALYZE, BUFFERS), and the rows it
examines and the pages it touches are counted.

The store: 20,000 records of a busy area (Leigh), with their feed rows on the area's key
and their author's key, written in bulk by earlier committed transactions, as years of
pushes would have; a quiet area (Leigh West) with a handful of records.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import pytest
from django.conf import settings
from django.db import connection

from ..statements import Watched
from .conftest import LEIGH_WEST_BOX, PASSWORD
from .pull_support import caught_up, create_observations, pull_caught_up

BUSY = 20_000
IN_LEIGH_WEST = ((LEIGH_WEST_BOX[0] + LEIGH_WEST_BOX[2]) / 2, (LEIGH_WEST_BOX[1] + LEIGH_WEST_BOX[3]) / 2)
TABLES = ("sync_change", "warden_app_observation")

pytestmark = pytest.mark.slow


# --- measuring ----------------------------------------------------------------------------

def _nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


class Plans:
    """Plans of the statements a pull ran on the feed and the record table (or `tables`)."""

    def __init__(self, tables: tuple[str, ...] = TABLES):
        self.tables = tables
        self.statements: list[tuple[str, dict]] = []
        self.indexes: dict[str, str] = {}  # index name -> table

    def clear(self) -> None:
        self.statements.clear()

    def examined(self, sql: str, plan: dict) -> int:
        """Rows the statement read from the tables (index entries and heap tuples, those
        filtered out included), over all loops."""
        total = 0
        for node in _nodes(plan["Plan"]):
            table = node.get("Relation Name") or self.indexes.get(node.get("Index Name", ""))
            if table in self.tables:
                rows = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0) + node.get(
                    "Rows Removed by Index Recheck", 0)
                total += rows * node.get("Actual Loops", 1)
        return total

    @staticmethod
    def pages(plan: dict) -> int:
        top = plan["Plan"]
        return top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)

    def seq_scans(self) -> list[str]:
        """Statements that ran a sequential scan of a big table (a plan's branch that was
        never executed, such as a fallback not needed, does not count)."""
        return [sql for sql, plan in self.statements for node in _nodes(plan["Plan"])
                if node["Node Type"] == "Seq Scan" and node.get("Relation Name") in self.tables
                and node.get("Actual Loops", 1) > 0]

    def total_examined(self) -> int:
        return sum(self.examined(sql, plan) for sql, plan in self.statements)

    def report(self) -> str:
        return "\n".join(f"{self.examined(s, p):>7} rows {self.pages(p):>5} pages  {' '.join(s.split())[:150]}"
                         for s, p in self.statements)

    def check(self, returned: int, *, rows_per_change: int = 6, slack: int = 40, max_pages: int = 150) -> None:
        """O(returned): no sequential scan, rows examined within a small multiple of the
        changes returned, and every statement within a small number of pages."""
        assert self.statements, "nothing measured"
        assert not self.seq_scans(), self.report()
        assert self.total_examined() <= rows_per_change * returned + slack, self.report()
        for _sql, plan in self.statements:
            assert self.pages(plan) <= max_pages + 2 * returned, self.report()


@contextmanager
def measured(tables: tuple[str, ...] = TABLES):
    """Runs every SELECT of the engine on `tables` (the feed and the record table) under
    EXPLAIN ANALYZE first."""
    from fieldsync import db

    plans = Plans(tables)
    with connection.cursor() as c:
        c.execute("SELECT indexname, tablename FROM pg_indexes WHERE tablename = ANY(%s)", [list(tables)])
        plans.indexes = dict(c.fetchall())
    real = db.cursor

    def explain(cursor, text, params, options):
        head = text.lstrip().upper()
        if any(t in text for t in tables) and head.startswith(("SELECT", "WITH", "(")) and "FOR UPDATE" not in head:
            # The plan checked must be the plan that runs: a prepared scan of the feed
            # could settle on a generic plan, made without these values (pull.py).
            assert "sync_change" not in text or options.get("prepare") is False, text
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + text, params)
            plan = cursor.fetchone()[0]
            plans.statements.append((text, plan[0] if isinstance(plan, list) else plan))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(db, "cursor", lambda: Watched(real(), explain))
        yield plans


# --- the store ----------------------------------------------------------------------------

def quiet_warden(world):
    """A council warden whose only area is Leigh West."""
    from warden_app.models import User
    from warden_app.roles import Role
    from warden_app.services.roles import role_groups_ensure
    from warden_app.services.teams import team_add_member, team_get_or_create, team_set_areas

    team = team_get_or_create(name="Leigh West")
    team_set_areas(team=team, areas=[world.areas["leigh_west"]])
    user = User.objects.create_user(username="quiet", password=PASSWORD, organisation=world.orgs["council"])
    user.groups.add(role_groups_ensure()[Role.WARDEN])
    team_add_member(team=team, user=user)
    return user


def grow_busy_area(world, count: int, *, days_old: float, review_state: str = "approved") -> None:
    """`count` records by the warden in Leigh, last changed `days_old` days ago, with their
    feed rows, in one committed bulk transaction; then fresh planner statistics."""
    with connection.cursor() as c:
        c.execute(
            """
            WITH new AS (
              INSERT INTO warden_app_observation (id, version, created_at, updated_at, form_id, author_id,
                organisation_id, area_id, review_state, qualifier, incident_type, observed_at, description,
                action_taken, persons_involved, location, accuracy_m, fix_source, photos)
              SELECT gen_random_uuid(), 1, now() - make_interval(secs => %(age)s),
                now() - make_interval(secs => %(age)s) + g * interval '1 ms', %(form)s, %(author)s, %(org)s,
                %(area)s, %(state)s, 'nuisance', 'noise', now() - make_interval(secs => %(age)s), 'bulk', '{}', '[]',
                ST_SetSRID(ST_MakePoint(-2.520 + random() * 0.008, 53.495 + random() * 0.006), 4326), 5, 'gps', '{}'
              FROM generate_series(1, %(count)s) AS g
              RETURNING id, updated_at)
            INSERT INTO sync_change (record_type, record_id, scope_key, xid, seq, changed_at)
            SELECT 'observation', new.id, k.key, pg_current_xact_id()::text::bigint, nextval('sync_change_seq'),
                   new.updated_at
            FROM new CROSS JOIN (VALUES (%(area_key)s), (%(user_key)s)) AS k(key)
            ORDER BY new.updated_at, k.key
            """,
            {"age": days_old * 86400, "form": world.forms["observation"].pk, "author": world.users["warden"].pk,
             "org": world.orgs["council"].pk, "area": world.areas["leigh"].pk, "state": review_state,
             "count": count, "area_key": f"a:{world.areas['leigh'].pk}", "user_key": f"u:{world.users['warden'].pk}"},
        )
        c.execute("ANALYZE sync_change")
        c.execute("ANALYZE warden_app_observation")
        c.execute("SELECT count(*) FROM sync_change")
        assert c.fetchone()[0] >= 2 * count


def pull_measured(handheld, limit: int = 500):
    """One page, measured. A page that stopped short of the feed because another
    session's transaction held the horizon back is measured again from the same cursor."""
    for _ in range(100):
        with measured() as plans:
            page = handheld.pull(limit=limit)
        if page["has_more"] or caught_up(page["cursor"]):
            break
        time.sleep(0.02)
    handheld.cursor = page["cursor"]
    return page, plans


# --- the tests ----------------------------------------------------------------------------

def test_pulls_of_a_quiet_area_cost_what_they_return_beside_a_busy_one(tworld):
    quiet_warden(tworld)
    quiet = tworld.enrol("quiet")
    own = create_observations(quiet, 5, at=IN_LEIGH_WEST)
    grow_busy_area(tworld, BUSY, days_old=1)

    # First sync of the quiet device: 5 records.
    page, plans = pull_measured(quiet)
    assert sorted(c["id"] for c in page["changes"]) == sorted(own) and not page["has_more"]
    plans.check(returned=5)

    # The busy area keeps changing; the quiet one gets one more record.
    grow_busy_area(tworld, 2_000, days_old=0)
    busy_edit = tworld.enrol("warden2")
    more = create_observations(busy_edit, 3)
    new = create_observations(quiet, 1, at=IN_LEIGH_WEST)
    page, plans = pull_measured(quiet)
    assert [c["id"] for c in page["changes"]] == new
    plans.check(returned=1)

    # Nothing new: an empty pull examines next to nothing.
    page, plans = pull_measured(quiet)
    assert page["changes"] == []
    plans.check(returned=0, slack=10)

    # A device of the busy area, once in step, pays for its few new changes only.
    busy = tworld.enrol("warden2")
    pull_caught_up(busy, limit=1000)
    latest = create_observations(busy_edit, 2)
    page, plans = pull_measured(busy)
    assert sorted(c["id"] for c in page["changes"]) == sorted(latest)
    plans.check(returned=2)
    assert set(more) <= set(k[1] for k in busy.store)

    # The instrument counts what it should: a full page of the busy area examines at
    # least the rows it returns.
    fresh = tworld.enrol("warden2")
    page, plans = pull_measured(fresh, limit=100)
    assert len(page["changes"]) == 100 and page["has_more"]
    assert plans.total_examined() >= 100
    plans.check(returned=100)


def test_first_sync_and_leaving_of_a_busy_area_do_not_walk_its_history(tworld):
    """20,000 records of the area last changed long before the window: a first sync of the
    area (10 recent records), its next pulls, and leaving the area later, all examine
    rows in proportion to the window, not the history."""
    from warden_app.services.teams import team_remove_member

    grow_busy_area(tworld, BUSY, days_old=settings.SYNC_WINDOW_DAYS + 30)
    recent = create_observations(tworld.enrol("warden2"), 10)
    pcso = tworld.enrol("pcso")

    page, plans = pull_measured(pcso, limit=4)
    assert len(page["changes"]) == 4 and page["has_more"]
    plans.check(returned=4)
    got = [c["id"] for c in page["changes"]]
    while page["has_more"]:
        page, plans = pull_measured(pcso, limit=4)
        plans.check(returned=len(page["changes"]))
        got += [c["id"] for c in page["changes"]]
    assert sorted(got) == sorted(recent)

    page, plans = pull_measured(pcso)
    assert page["changes"] == []
    plans.check(returned=0, slack=10)

    team_remove_member(team=tworld.teams["leigh"], user=tworld.users["pcso"])
    page, plans = pull_measured(pcso)
    assert sorted(c["id"] for c in page["changes"]) == sorted(recent)
    assert {c["op"] for c in page["changes"]} == {"evict"}
    plans.check(returned=10)


def test_a_first_sync_page_costs_its_page_not_the_area(tworld):
    """Paging through a busy area: each page examines about what it returns."""
    grow_busy_area(tworld, BUSY, days_old=2, review_state="submitted")
    reader = tworld.enrol("warden2")
    for _ in range(3):
        page, plans = pull_measured(reader, limit=100)
        assert len(page["changes"]) == 100 and page["has_more"]
        plans.check(returned=100)


def test_a_first_sync_finds_the_window_without_walking_the_history_in_xid_order(tworld):
    """A busy window over a long history (500 records in the window, 20,000 older, as in
    bench/sync.py): asked for the oldest writer in the window, the planner would walk the
    key in xid order from its first row, through the whole history, expecting an early hit.
    The first page reads the window's feed rows (two per record) a few times, from the
    index, and then its page: thousands of rows, where the walk read the 20,000 too."""
    grow_busy_area(tworld, BUSY, days_old=settings.SYNC_WINDOW_DAYS + 30)
    writer = tworld.enrol("warden2")
    recent = create_observations(writer, 250) + create_observations(writer, 250)
    with connection.cursor() as c:
        c.execute("ANALYZE sync_change")  # as autovacuum would: the planner knows the window is busy
    page, plans = pull_measured(tworld.enrol("pcso"), limit=100)
    assert len(page["changes"]) == 100 and page["has_more"]
    assert {c["id"] for c in page["changes"]} <= set(recent)
    plans.check(returned=100, slack=4 * len(recent))
