"""Partner outputs do not locate anyone: no combination of them places a record, or a group of
records, more precisely than DISCLOSURE_LOCATION_RADIUS_M (docs/disclosure.md, "Locations").

Groups of records at one address each, below the threshold (3, 9, and 9 among August's
records in L2) and at or above it (10 in a map point cell that straddles the L1/L2 edge, 12,
25), on the partnership of `support.py`. As partner_fire, through HTTP:

1. the attack: every output a partner can get is fetched, and each group's location is
   reconstructed from the hotspot cells (the intersection of the bandwidth discs around the
   published cell centres, outside those around unpublished ones, as the issue describes)
   and from the classes (the densest cells' centroid). On the analysts' precise map the same
   attack finds a group within a few metres; on the partner's it finds only the map point;
2. the claim, by construction: every group is moved to the four corners of its map point's
   cell, its centre, and then each of its records to its own random place in the cell (across
   the L1/L2 edge for one group), all groups at once, and every partner output is fetched
   again and compared byte for byte: identical. The cell has a circumradius of R (200 m), so
   whatever an attacker estimates, some location the outputs allow is at least R from it.
   Moving a group one cell over does change them, and moving it within its cell changes the
   analysts' map: the comparison can see a move.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import datetime

import pytest
from django.contrib.gis.geos import GEOSGeometry, Point, Polygon
from django.db import connection, transaction
from django.test import override_settings

from warden_app.aggregates.disclosure import location_radius_m, map_point_spacing_m
from warden_app.aggregates.selectors import RECORD_TYPES
from warden_app.models import Observation

from .support import BOXES, LONDON, bng, box_polygon, from_bng, get_json, in_interior, to_bng

R = 200.0  # the default DISCLOSURE_LOCATION_RADIUS_M
S = math.sqrt(2) * R  # the map point spacing it gives
H, C = 250.0, 50.0  # the partners' bandwidth and cell size (the defaults)
INSET = 0.5  # metres kept from a cell's edges, so PROJ's last digits cannot cross one
ENDPOINTS = ("counts", "hotspots")
FAMILIES = {"every set": list(BOXES), "nested sets only": ["partnership-areas", "lsoa"]}
FAST_PERIODS = ("2026-08", "2026-Q3", "2026-10")  # the periods the groups are in
ALL_PERIODS = tuple([f"2026-{m:02d}" for m in range(1, 13)] + [f"2026-Q{q}" for q in range(1, 5)])


@dataclass
class Group:
    name: str
    size: int
    cell: tuple[int, int]  # its map point cell (i, j)
    address: tuple[float, float]  # BNG metres
    month: int
    ids: list

    @property
    def map_point(self) -> tuple[float, float]:
        return (self.cell[0] + 0.5) * S, (self.cell[1] + 0.5) * S

    def at(self, fx: float, fy: float) -> tuple[float, float]:
        """The point fx, fy of the way across the cell (0..1), kept INSET from its edges."""
        return (self.cell[0] * S + INSET + fx * (S - 2 * INSET), self.cell[1] * S + INSET + fy * (S - 2 * INSET))


def lonlat_of(xy) -> tuple[float, float]:
    point = Point(*xy, srid=27700)
    point.transform(from_bng())
    return point.x, point.y


def cell_of(lonlat) -> tuple[int, int]:
    x, y = bng(lonlat)
    return math.floor(x / S), math.floor(y / S)


def place(world, name, size, seed_lonlat, fraction, month) -> Group:
    """`size` records at one address: the point `fraction` of the way across the map point
    cell holding `seed_lonlat`."""
    i, j = cell_of(seed_lonlat)
    address = (i * S + fraction[0] * S, j * S + fraction[1] * S)
    when = datetime(2026, month, 12, 14, tzinfo=LONDON)
    rows = world.observations([(lonlat_of(address), when, {}) for _ in range(size)])
    return Group(name, size, (i, j), address, month, [row.pk for row in rows])


@pytest.fixture
def groups(q3) -> list[Group]:
    made = []
    # Below the threshold: alone in X1 in October (X1 then holds 12: its count is published).
    made.append(place(q3, "three", 3, (-2.503, 53.500), (0.8, 0.3), 10))
    made.append(place(q3, "nine", 9, (-2.503, 53.494), (0.2, 0.75), 10))
    # Below the threshold, among L2's 22 records of August.
    made.append(place(q3, "nine among others", 9, (-2.5125, 53.5005), (0.7, 0.65), 8))
    # At the threshold, in L1 in a cell that reaches into L2: its map point decides the area.
    edge = bng((-2.517, 53.5003))
    i = math.floor(edge[0] / S)
    assert 30 < edge[0] - i * S < S - 30  # the edge runs through the cell's middle part
    ten = place(q3, "ten", 10, (-2.517, 53.5003), ((edge[0] - 20 - i * S) / S, 0.6), 10)
    assert in_interior(BOXES["lsoa"]["L1"], lonlat_of(ten.address))
    made.append(ten)
    # Above it, in Wigan: 12 at W1's west end, 25 at W2's east end (their discs apart).
    made.append(place(q3, "twelve", 12, (-2.636, 53.5475), (0.3, 0.35), 10))
    made.append(place(q3, "twenty-five", 25, (-2.628, 53.5425), (0.55, 0.45), 10))
    for group in made:  # each group's map point is inside one area of the fixture
        assert any(in_interior(box, lonlat_of(group.map_point)) for box in BOXES["lsoa"].values()), group.name
    return made


# --- what a partner can get ------------------------------------------------------------------

def partner_outputs(client, family, periods, record_types=("observation",)) -> dict:
    """Every response body a partner can get for these periods, as bytes; periods not served
    yet answer 400 period_not_closed, which is an output too."""
    outputs = {}
    for endpoint in ENDPOINTS:
        for slug in FAMILIES[family]:
            for period in periods:
                for record_type in record_types:
                    response = client.get(f"/api/v1/aggregates/{endpoint}",
                                          {"boundary_set": slug, "period": period, "record_type": record_type})
                    assert response.status_code in (200, 400), response.content[:300]
                    if response.status_code == 400:
                        assert json.loads(response.content)["code"] == "period_not_closed", response.content
                    outputs[(endpoint, slug, period, record_type)] = (response.status_code, response.content)
    return outputs


def move(group: Group, xy_per_record) -> None:
    for pk, xy in zip(group.ids, xy_per_record, strict=True):
        Observation.objects.filter(pk=pk).update(location=Point(*lonlat_of(xy), srid=4326))


def stored_bng(group: Group) -> list[tuple[float, float]]:
    """Where PostGIS puts the group's records on the grid: the positions really tested."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT ST_X(ST_Transform(location, 27700)), ST_Y(ST_Transform(location, 27700)) "
                       "FROM warden_app_observation WHERE id = ANY(%s)", [group.ids])
        return cursor.fetchall()


# --- the attack ---------------------------------------------------------------------------------

def published_cells(body) -> set[tuple[int, int]]:
    cells = set()
    for feature in body["features"]:
        polygon = GEOSGeometry(json.dumps(feature["geometry"]), srid=4326)
        polygon.transform(to_bng())
        cells.add((math.floor(polygon.centroid.x / C), math.floor(polygon.centroid.y / C)))
    return cells


def shown_region(slug, body):
    """The ground a map covers: the set's areas, less those it names as suppressed (public)."""
    region = None
    for code, box in BOXES[slug].items():
        if code in body.get("suppressed_areas", []):
            continue
        polygon = box_polygon(box)
        polygon.transform(to_bng())
        region = polygon if region is None else region.union(polygon)
    return region


def disc_attack(body, slug, near: tuple[float, float]):
    """Every position P (2 m lattice) such that the cells meeting the map whose centres lie
    within one bandwidth of P are exactly the published ones around `near`: the records must
    be at P, if they are at one place. Returns (estimate, radius of the consistent region)."""
    region = shown_region(slug, body)
    cells = {ij for ij in published_cells(body)
             if math.dist(((ij[0] + 0.5) * C, (ij[1] + 0.5) * C), near) < H + 2 * C}
    if not cells:
        return None
    centres = [((i + 0.5) * C, (j + 0.5) * C) for i, j in cells]
    x0, x1 = max(x for x, _ in centres) - H, min(x for x, _ in centres) + H
    y0, y1 = max(y for _, y in centres) - H, min(y for _, y in centres) + H
    window = {(i, j) for i in range(math.floor((x0 - H) / C) - 1, math.floor((x1 + H) / C) + 2)
              for j in range(math.floor((y0 - H) / C) - 1, math.floor((y1 + H) / C) + 2)}
    visible = set()
    for i, j in window:
        square = Polygon.from_bbox((i * C, j * C, (i + 1) * C, (j + 1) * C))
        square.srid = 27700
        if region.intersection(square).area > 0:
            visible.add((i, j))
    fits = []
    steps_x, steps_y = int((x1 - x0) / 2) + 1, int((y1 - y0) / 2) + 1
    for a in range(steps_x):
        for b in range(steps_y):
            px, py = x0 + 2 * a, y0 + 2 * b
            reached = {ij for ij in visible
                       if ((ij[0] + 0.5) * C - px) ** 2 + ((ij[1] + 0.5) * C - py) ** 2 < H * H}
            if reached & visible == cells:
                fits.append((px, py))
    if not fits:
        return None
    estimate = (sum(x for x, _ in fits) / len(fits), sum(y for _, y in fits) / len(fits))
    return estimate, max(math.dist(estimate, p) for p in fits)


def peak_attack(body, near: tuple[float, float]):
    """The centroid of the densest published class around `near` (the kernel's peak)."""
    rank = {name: k for k, name in enumerate(body["classes"])}
    found = []
    for feature in body["features"]:
        polygon = GEOSGeometry(json.dumps(feature["geometry"]), srid=4326)
        polygon.transform(to_bng())
        centre = (polygon.centroid.x, polygon.centroid.y)
        if math.dist(centre, near) < H + 2 * C:
            found.append((rank[feature["properties"]["class"]], centre))
    if not found:
        return None
    top = max(k for k, _ in found)
    peak = [c for k, c in found if k == top]
    return sum(x for x, _ in peak) / len(peak), sum(y for _, y in peak) / len(peak)


def near_cells(body, xy) -> bool:
    return any(math.dist(((i + 0.5) * C, (j + 0.5) * C), xy) < H for i, j in published_cells(body))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_attack_finds_the_map_point_and_nothing_finer(groups, q3, family):
    partner, analyst = q3.client("partner_fire"), q3.client("analyst")
    assert location_radius_m() == R and math.isclose(map_point_spacing_m(), S)
    located = set()
    report = []
    for group in groups:
        period = f"2026-{group.month:02d}"
        for slug in FAMILIES[family]:
            with override_settings(DISCLOSURE_PARTNER_BOUNDARY_SETS=FAMILIES[family]):
                mine = get_json(partner, "/api/v1/aggregates/hotspots", {"boundary_set": slug, "period": period})
            assert "282.84 m cell" in mine["locations"] and "more precisely than 200 m" in mine["locations"]
            precise = get_json(analyst, "/api/v1/aggregates/hotspots", {"boundary_set": slug, "period": period})
            if group.size < 10:
                # Below the threshold nothing is published for the group alone: no cell near
                # the lone ones; "nine among others" only warms the cells of L2's records.
                assert group.name == "nine among others" or not near_cells(mine, group.map_point), group.name
                continue
            found = disc_attack(mine, slug, group.address)
            if found is None:  # its area withheld (secondary suppression): no cell near it at all
                assert not near_cells(mine, group.map_point), (group.name, slug)
                continue
            estimate, spread = found
            exact = disc_attack(precise, slug, group.address)
            assert exact is not None
            # The attack works: on the precise map it places the group within metres…
            assert math.dist(exact[0], group.address) < 15, (group.name, slug, exact)
            # …on the partner's it finds the map point, whatever the address in the cell.
            assert math.dist(estimate, group.map_point) < 15, (group.name, slug, estimate)
            peak = peak_attack(mine, group.address)
            assert peak is not None and math.dist(peak, group.map_point) < 2 * C
            # Any estimate is at least R from one of the cell's corners, all of which give these
            # very outputs (the next test): R is the most the outputs can say.
            corners = [group.at(fx, fy) for fx in (0, 1) for fy in (0, 1)]
            assert max(math.dist(estimate, corner) for corner in corners) >= R - INSET * math.sqrt(2) - 0.01
            report.append((group.name, slug, math.dist(exact[0], group.address), math.dist(estimate, group.address),
                           math.dist(peak, group.address), spread))
            located.add(group.name)
    # Every group at or above the threshold is on some map (the ten only where its area is
    # not withheld for the partly overlapping ward's sake: with nested sets).
    assert located == ({"twelve", "twenty-five"} if family == "every set" else {"ten", "twelve", "twenty-five"})
    print(f"\n{family}: group, set, error on the precise map, disc attack error, peak attack error, "
          "radius of the disc attack's region (m)")
    for row in report:
        print(f"{row[0]:>12} {row[1]:>18} {row[2]:7.1f} {row[3]:7.1f} {row[4]:7.1f} {row[5]:7.1f}")


# --- the claim: every location in the cell gives the same outputs -----------------------------

def positions(group: Group, rng: random.Random):
    """Where the group is put: each corner of its cell, its centre, then every record at its
    own random place in the cell."""
    for fx, fy in ((0, 0), (1, 0), (0, 1), (1, 1), (0.5, 0.5)):
        yield f"corner {fx},{fy}", [group.at(fx, fy)] * group.size
    yield "scattered", [group.at(rng.random(), rng.random()) for _ in range(group.size)]


def assert_outputs_ignore_where_in_the_cell(groups, world, family, periods, record_types):
    partner = world.client("partner_fire")
    analyst = world.client("analyst")
    baseline = partner_outputs(partner, family, periods, record_types)
    assert sum(status == 200 for status, _ in baseline.values()) >= len(baseline) // 2
    precise_before = analyst.get("/api/v1/aggregates/hotspots", {"boundary_set": "lsoa", "period": "2026-10"}).content
    rng = random.Random(15)
    plans = {group.name: list(positions(group, rng)) for group in groups}
    analyst_moved = 0
    for step in range(len(plans[groups[0].name])):
        savepoint = transaction.savepoint()
        try:
            for group in groups:
                label, xys = plans[group.name][step]
                move(group, xys)
                placed = stored_bng(group)
                # The records really are in the cell, and for the corners R from its centre.
                assert all((math.floor(x / S), math.floor(y / S)) == group.cell for x, y in placed), group.name
                if label.startswith("corner 0,0") or label.startswith("corner 1,1"):
                    assert math.dist(placed[0], group.map_point) >= R - INSET * math.sqrt(2) - 0.01
            again = partner_outputs(partner, family, periods, record_types)
            changed = [key for key in baseline if again[key] != baseline[key]]
            assert changed == [], (label, changed[:5])
            precise = analyst.get("/api/v1/aggregates/hotspots", {"boundary_set": "lsoa", "period": "2026-10"})
            analyst_moved += precise.content != precise_before
        finally:
            transaction.savepoint_rollback(savepoint)
    assert analyst_moved == len(plans[groups[0].name])  # analysts' precise map does see each move

    moved = 0
    # One cell over, a group on a partner's map does change what partners see.
    for group in groups:
        period = f"2026-{group.month:02d}"
        maps = [json.loads(body) for (endpoint, _, p, _), (status, body) in baseline.items()
                if endpoint == "hotspots" and p == period and status == 200]
        if group.size < 10 or not any(near_cells(body, group.map_point) for body in maps):
            continue
        moved += 1
        savepoint = transaction.savepoint()
        try:
            x, y = group.address
            move(group, [(x + S, y)] * group.size)
            again = partner_outputs(partner, family, [period], ("observation",))
            assert any(again[key] != baseline[key] for key in again), group.name
        finally:
            transaction.savepoint_rollback(savepoint)
    assert moved >= 2


@pytest.mark.parametrize("family", list(FAMILIES))
def test_moving_any_group_anywhere_in_its_cell_changes_no_partner_output(groups, q3, family):
    """The periods holding the groups, every set, both endpoints (observations: the records
    moved are observations; the slow test below adds every other period and record type)."""
    ten = next(group for group in groups if group.name == "ten")
    # Its cell crosses the L1/L2 edge: the corners (0, *) are in L1, (1, *) in L2.
    assert in_interior(BOXES["lsoa"]["L1"], lonlat_of(ten.at(0, 0.5)))
    assert in_interior(BOXES["lsoa"]["L2"], lonlat_of(ten.at(1, 0.5)))
    with override_settings(DISCLOSURE_PARTNER_BOUNDARY_SETS=FAMILIES[family]):
        assert_outputs_ignore_where_in_the_cell(groups, q3, family, FAST_PERIODS, ("observation",))


@pytest.mark.slow
def test_moving_any_group_anywhere_in_its_cell_changes_no_partner_output_at_all(groups, q3):
    """Every month and quarter of the year (served or not yet), every record type."""
    assert_outputs_ignore_where_in_the_cell(groups, q3, "every set", ALL_PERIODS, RECORD_TYPES)


def test_partners_cannot_ask_for_finer_views(partnership):
    """The only knobs are the set, the period and the record type: a bbox, a bandwidth, a
    cell size, dates, types or areas that might split a map point cell are refused."""
    partner = partnership.client("partner_fire")
    base = {"boundary_set": "lsoa", "period": "2026-07"}
    for extra in ({"bbox": "-2.52,53.49,-2.51,53.50"}, {"bandwidth": "50"}, {"cell_size": "5"},
                  {"start": "2026-07-01"}, {"end": "2026-07-15"}, {"incident_type": "noise"}, {"areas": "L1"},
                  {"radius": "1"}, {"map_points": "off"}):
        for endpoint in ENDPOINTS:
            body = get_json(partner, f"/api/v1/aggregates/{endpoint}", {**base, **extra}, expect=400)
            assert body["code"] == "filter_not_allowed" and set(body["fields"]) == set(extra)


def test_the_radius_is_a_setting(groups, q3):
    """With R = 400 m the cells are 565.69 m: the twelve moved to another 282.84 m cell inside
    its 565.69 m one changes no partner output; the documents say which grid they use."""
    twelve = next(group for group in groups if group.name == "twelve")
    partner = q3.client("partner_fire")
    with override_settings(DISCLOSURE_LOCATION_RADIUS_M=400.0):
        assert math.isclose(map_point_spacing_m(), 2 * S)
        body = get_json(partner, "/api/v1/aggregates/hotspots", {"boundary_set": "lsoa", "period": "2026-10"})
        assert "565.69 m cell" in body["locations"] and "more precisely than 400 m" in body["locations"]
        big = (math.floor(twelve.address[0] / (2 * S)), math.floor(twelve.address[1] / (2 * S)))
        before = partner_outputs(partner, "every set", ["2026-10"])
        for corner in ((0.001, 0.001), (0.999, 0.001), (0.001, 0.999), (0.999, 0.999)):
            target = ((big[0] + corner[0]) * 2 * S, (big[1] + corner[1]) * 2 * S)
            savepoint = transaction.savepoint()
            try:
                move(twelve, [target] * twelve.size)
                assert partner_outputs(partner, "every set", ["2026-10"]) == before, corner
            finally:
                transaction.savepoint_rollback(savepoint)
    # At the default radius the same moves are seen: they cross 282.84 m cells.
    before = partner_outputs(partner, "every set", ["2026-10"])
    savepoint = transaction.savepoint()
    try:
        move(twelve, [((big[0] + 0.999) * 2 * S, (big[1] + 0.999) * 2 * S)] * twelve.size)
        assert partner_outputs(partner, "every set", ["2026-10"]) != before
    finally:
        transaction.savepoint_rollback(savepoint)
