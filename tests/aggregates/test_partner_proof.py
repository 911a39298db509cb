"""The proof: no combination of outputs a partner viewer can get reveals a count below the
threshold, differencing included.

On the partnership of `support.py` (L4 holds 3 observations in July 2026, L3's months are
9, 12, 12, LEIGH-TC is the union of L1..L4, WIGAN-TC of W1 and W2 and equal to ward WB, ward
WA overlaps Leigh partly), for the default family of partner geographies (every boundary
set) and for a nested-only one:

1. every request a partner can make for the periods holding data (every boundary set x every
   month and quarter x counts and hotspots x every record type) answers, and
   (a) no published count is below the threshold, (b) every one is a multiple of the
   rounding base, and each is the rounded true count;
2. for every pair of outputs whose record sets nest (a quarter and its months; an area and
   the areas of another set that make it up), the differencing attack on each suppressed
   cell leaves every value 0..threshold-1 possible; the same attack on plain suppression and
   rounding (no secondary suppression) pins L3's July at exactly 9;
3. hotspot outputs hold no number but coordinates, and every published cell has at least
   HOTSPOT_MIN_RECORDS records within one bandwidth of its centre;
(records are where partner outputs put them, at their map points: test_locations.py shows
that nothing a partner sees depends on where in its map point's cell a record lies);
4. the strong form, by construction: for every suppressed cell and every value v in
   0..threshold-1, a world where that cell holds v (its records deleted, v others put in
   it) gives every partner output of that quarter, counts and hotspots, byte for byte as
   before. So nothing a partner is shown can tell any of those values apart.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import datetime

import pytest
from django.contrib.gis.geos import GEOSGeometry
from django.db import transaction
from django.test import override_settings

from warden_app.aggregates.disclosure import period_parse, published_count
from warden_app.aggregates.selectors import RECORD_TYPES
from warden_app.models import AuditItem, Observation, StreetAudit

from .support import (
    BOXES,
    LONDON,
    centre_of,
    consistent_small_values,
    get_json,
    in_interior,
    jittered,
    map_point,
    map_point_bng,
    month_moment,
    numbers_outside_coordinates,
    to_bng,
)

T, B = 10, 5  # the default DISCLOSURE_MIN_COUNT and DISCLOSURE_ROUND_TO
H, MIN_RECORDS = 250.0, 10  # the default bandwidth and HOTSPOT_MIN_RECORDS
QUARTERS = {"2026-Q2": ["2026-04", "2026-05", "2026-06"], "2026-Q3": ["2026-07", "2026-08", "2026-09"]}
PERIODS = [p for quarter, months in QUARTERS.items() for p in [*months, quarter]]
FAMILIES = {"every set": [], "nested sets only": ["partnership-areas", "lsoa"]}
ENDPOINTS = ("counts", "hotspots")


def family_slugs(family: str) -> list[str]:
    return FAMILIES[family] or list(BOXES)


@pytest.fixture
def world(q3):
    """q3 plus street audits and their items in W1 in August (one rejected audit, whose
    items must not count)."""
    centre = centre_of(BOXES["lsoa"]["W1"])
    for k in range(14):
        audit = q3.street_audit(jittered(centre, k), month_moment(2026, 8, k))
        q3.audit_item(audit, jittered(centre, k + 50), grade="C", issue_type="litter")
    rejected = q3.street_audit(jittered(centre, 99), month_moment(2026, 8, 99), review_state="rejected")
    for k in range(4):
        q3.audit_item(rejected, jittered(centre, 200 + k))
    return q3


# --- the truth, computed here from the records, not by the code under test -------------------

def counted_records(record_type: str) -> list[tuple[tuple[float, float], datetime]]:
    if record_type == "observation":
        rows = Observation.objects.filter(deleted_at__isnull=True).exclude(review_state="rejected")
        return [((r.location.x, r.location.y), r.observed_at) for r in rows]
    if record_type == "street_audit":
        rows = StreetAudit.objects.filter(deleted_at__isnull=True).exclude(review_state="rejected")
        return [((r.location.x, r.location.y), r.started_at) for r in rows]
    rows = (AuditItem.objects.filter(deleted_at__isnull=True, street_audit__deleted_at__isnull=True)
            .exclude(street_audit__review_state="rejected").select_related("street_audit"))
    return [((r.location.x, r.location.y), r.street_audit.started_at) for r in rows]


def period_labels(moment: datetime) -> list[str]:
    local = moment.astimezone(LONDON)
    return [f"{local.year}-{local.month:02d}", f"{local.year}-Q{(local.month - 1) // 3 + 1}"]


def true_counts(record_type: str) -> dict[tuple[str, str, str], int]:
    """(set, area, period) -> records whose map point is in the area's interior in the period."""
    truth: dict = defaultdict(int)
    for located, moment in counted_records(record_type):
        lonlat = map_point(located)
        # GDAL here and PostGIS there may differ in the last digits: no map point so near an edge.
        assert all(min(abs(lonlat[0] - b[0]), abs(lonlat[0] - b[2]), abs(lonlat[1] - b[1]), abs(lonlat[1] - b[3]))
                   > 1e-6 for boxes in BOXES.values() for b in boxes.values())
        for slug, boxes in BOXES.items():
            for code, box in boxes.items():
                if in_interior(box, lonlat):
                    for label in period_labels(moment):
                        truth[(slug, code, label)] += 1
    return truth


# --- what a partner can get -------------------------------------------------------------------

def partner_outputs(client, slugs, periods, record_types=RECORD_TYPES) -> dict:
    return {
        (endpoint, slug, period, record_type): get_json(
            client, f"/api/v1/aggregates/{endpoint}",
            {"boundary_set": slug, "period": period, "record_type": record_type},
        )
        for endpoint in ENDPOINTS for slug in slugs for period in periods for record_type in record_types
    }


def published_counts(outputs: dict, record_type: str) -> dict[tuple[str, str, str], int | None]:
    return {
        (slug, row["code"], period): row["count"]
        for (endpoint, slug, period, rtype), body in outputs.items() if endpoint == "counts" and rtype == record_type
        for row in body["areas"]
    }


def nested_partitions(slugs) -> list[tuple[tuple[str, str], list[tuple[str, str]]]]:
    """(area, [areas of another set that tile it exactly]), found from the boxes."""
    def size(box):
        return (box[2] - box[0]) * (box[3] - box[1])

    def inside(inner, outer):
        return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]

    found = []
    for coarse in slugs:
        for fine in slugs:
            if fine == coarse:
                continue
            for code, box in BOXES[coarse].items():
                parts = [c for c, b in BOXES[fine].items() if inside(b, box)]
                if parts and math.isclose(sum(size(BOXES[fine][c]) for c in parts), size(box), rel_tol=1e-9):
                    found.append(((coarse, code), [(fine, c) for c in parts]))
    return found


# --- 1 to 3 -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_partner_output_respects_the_threshold_and_defeats_differencing(world, family):
    slugs = family_slugs(family)
    with override_settings(DISCLOSURE_PARTNER_BOUNDARY_SETS=FAMILIES[family]):
        outputs = partner_outputs(world.client("partner_fire"), slugs, PERIODS)
    assert len(outputs) == len(ENDPOINTS) * len(slugs) * len(PERIODS) * len(RECORD_TYPES)

    published_anything = suppressed_anything = 0
    for record_type in RECORD_TYPES:
        truth = true_counts(record_type)
        shown = published_counts(outputs, record_type)
        assert len(shown) == sum(len(BOXES[s]) for s in slugs) * len(PERIODS)
        for cell, value in shown.items():
            if value is None:
                suppressed_anything += 1
                continue
            published_anything += 1
            assert value >= T, cell  # (a)
            assert value % B == 0, cell  # (b)
            assert value == published_count(truth[cell], minimum=T, base=B), cell
        for cell, value in shown.items():
            if truth[cell] < T:
                assert value is None, cell

        # (c) every nesting pair: quarters and their months; areas and the areas tiling them.
        relations = [((s, c, q), [(s, c, m) for m in months])
                     for s in slugs for c in BOXES[s] for q, months in QUARTERS.items()]
        relations += [((*parent, p), [(*child, p) for child in children])
                      for parent, children in nested_partitions(slugs) for p in PERIODS]
        for parent, children in relations:
            for child in children:
                if truth[child] >= T:
                    continue
                siblings = [shown[c] for c in children if c != child]
                possible = consistent_small_values(parent=shown[parent], siblings=siblings, minimum=T, base=B)
                assert possible == set(range(T)), (parent, child, truth[child], possible)
                if shown[parent] is not None and None not in siblings:
                    assert shown[parent] - sum(siblings) != truth[child]
    assert published_anything > 20 and suppressed_anything > 20  # the data exercise both

    # Without secondary suppression the same data give the attack away: L3 July is 9.
    truth = true_counts("observation")
    naive = {cell: published_count(n, minimum=T, base=B) for cell, n in truth.items()}
    july = [naive.get(("lsoa", "L3", m)) for m in QUARTERS["2026-Q3"]]
    assert july[0] is None
    assert consistent_small_values(parent=naive[("lsoa", "L3", "2026-Q3")], siblings=july[1:], minimum=T, base=B,
                                   suppressed_means_small=True) == {9}

    # 3: hotspots carry no numbers, and each published cell has enough records near it.
    # Partners' maps are made from the map points, so their records are counted there.
    located = {rt: [(map_point(lonlat), moment, map_point_bng(lonlat)) for lonlat, moment in counted_records(rt)]
               for rt in RECORD_TYPES}
    for (endpoint, slug, period, record_type), body in outputs.items():
        if endpoint != "hotspots":
            continue
        assert body["type"] == "FeatureCollection"
        assert numbers_outside_coordinates(body) == [], (slug, period, record_type)
        counts_body = outputs[("counts", slug, period, record_type)]
        assert set(body["suppressed_areas"]) == {row["code"] for row in counts_body["areas"] if row["suppressed"]}
        shown_boxes = [BOXES[slug][row["code"]] for row in counts_body["areas"] if not row["suppressed"]]
        span = period_parse(period)
        buckets = defaultdict(list)  # records by bandwidth-sized square, to find neighbours fast
        for lonlat, moment, (x, y) in located[record_type]:
            if span.start <= moment < span.end:
                buckets[(math.floor(x / H), math.floor(y / H))].append((lonlat, x, y))
        for feature in body["features"]:
            assert set(feature["properties"]) == {"class"}
            assert feature["properties"]["class"] in body["classes"]
            cell = GEOSGeometry(json.dumps(feature["geometry"]), srid=4326)
            cell.transform(to_bng())
            i, j = math.floor(cell.centroid.x / 50), math.floor(cell.centroid.y / 50)
            cx, cy = (i + 0.5) * 50, (j + 0.5) * 50
            bx, by = math.floor(cx / H), math.floor(cy / H)
            near = [lonlat for dx in (-1, 0, 1) for dy in (-1, 0, 1) for lonlat, x, y in buckets[(bx + dx, by + dy)]
                    if (x - cx) ** 2 + (y - cy) ** 2 < H * H]
            assert len(near) >= MIN_RECORDS
            # …and enough of them in areas whose counts are published (the only ones used).
            assert sum(any(in_interior(box, lonlat) for box in shown_boxes) for lonlat in near) >= MIN_RECORDS
    assert any(body["features"] for (endpoint, *_), body in outputs.items() if endpoint == "hotspots")


# --- 4: every small value is possible -----------------------------------------------------------

def generic_point(box) -> tuple[float, float]:
    """A point inside `box`, on no edge of any area of any set."""
    x, y = centre_of(box)
    point = (x + 0.000123, y + 0.000077)
    edges_x = {b[k] for boxes in BOXES.values() for b in boxes.values() for k in (0, 2)}
    edges_y = {b[k] for boxes in BOXES.values() for b in boxes.values() for k in (1, 3)}
    assert in_interior(box, point)
    assert all(abs(point[0] - e) > 1e-9 for e in edges_x) and all(abs(point[1] - e) > 1e-9 for e in edges_y)
    return point


def move_to_value(world, slug: str, code: str, period: str, value: int) -> None:
    """Make the cell hold `value` observations: delete those it counts (their map points
    are in it), add `value` at one point inside it, in the middle of its period."""
    box = BOXES[slug][code]
    span = period_parse(period)
    counted = Observation.objects.filter(
        observed_at__gte=span.start, observed_at__lt=span.end, deleted_at__isnull=True
    ).exclude(review_state="rejected")
    inside = [r.pk for r in counted if in_interior(box, map_point((r.location.x, r.location.y)))]
    Observation.objects.filter(pk__in=inside).delete()
    middle = span.months_of_quarter[1] if not span.is_month else span
    when = datetime(middle.year, middle.month, 15, 12, tzinfo=LONDON)
    world.observations([(generic_point(box), when, {}) for _ in range(value)])


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_suppressed_cell_could_hold_any_value_below_the_threshold(world, family):
    slugs = family_slugs(family)
    client = world.client("partner_fire")
    truth = true_counts("observation")
    # Every small cell of 2026-Q3, and 2026-Q2's around the two June records, plus an empty quarter.
    small = [(s, c, p) for s in slugs for c in BOXES[s] for p in [*QUARTERS["2026-Q3"], "2026-Q3"]
             if truth[(s, c, p)] < T]
    small += [("lsoa", "L1", "2026-06"), ("lsoa", "L1", "2026-Q2"), ("partnership-areas", "LEIGH-TC", "2026-Q2"),
              ("lsoa", "W2", "2026-Q2")]
    assert ("lsoa", "L4", "2026-07") in small and truth[("lsoa", "L4", "2026-07")] == 3
    checked = 0
    with override_settings(DISCLOSURE_PARTNER_BOUNDARY_SETS=FAMILIES[family]):
        baseline = {q: partner_outputs(client, slugs, [*months, q], ["observation"]) for q, months in QUARTERS.items()}
        for slug, code, period in small:
            quarter = period_parse(period).whole_quarter.label
            for value in range(T):
                savepoint = transaction.savepoint()
                try:
                    move_to_value(world, slug, code, period, value)
                    assert true_counts("observation")[(slug, code, period)] == value
                    again = partner_outputs(client, slugs, [*QUARTERS[quarter], quarter], ["observation"])
                    assert again == baseline[quarter], (slug, code, period, value)
                    checked += 1
                finally:
                    transaction.savepoint_rollback(savepoint)
    assert checked == len(small) * T
