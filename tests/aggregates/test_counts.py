"""Counts by area: exact inside the partnership, controlled for partners."""
from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from django.db.utils import ConnectionDoesNotExist
from django.test import override_settings

from warden_app.aggregates import selectors
from warden_app.aggregates.disclosure import QUARTER_INDEX, map_point_spacing_m, period_parse
from warden_app.aggregates.selectors import RecordFilter
from warden_app.models import AccessLogEntry

from .support import BOXES, LONDON, Q3_COUNTS, centre_of, get_json, in_interior, jittered, map_point

COUNTS = "/api/v1/aggregates/counts"


def by_code(body) -> dict[str, int | None]:
    return {row["code"]: row["count"] for row in body["areas"]}


def test_analysts_get_exact_counts_per_area_of_any_boundary_set(q3):
    analyst = q3.client("analyst")
    lsoa = get_json(analyst, COUNTS, {"boundary_set": "lsoa", "period": "2026-Q3"})
    assert by_code(lsoa) == {code: sum(months) for code, months in Q3_COUNTS.items()}
    assert lsoa["disclosure"] is None and all(row["suppressed"] is False for row in lsoa["areas"])
    # Rejected (5 in W1 in July), deleted (1 in L3 in July) and out-of-area records never count.
    july = get_json(analyst, COUNTS, {"boundary_set": "lsoa", "period": "2026-07"})
    assert by_code(july) == {code: months[0] for code, months in Q3_COUNTS.items()}
    # Without a boundary set: the operational areas.
    ops = get_json(analyst, COUNTS, {"period": "2026-Q3"})
    assert ops["boundary_set"] == {"slug": None, "name": "Operational areas"}
    assert by_code(ops) == {
        "LEIGH-TC": sum(sum(Q3_COUNTS[c]) for c in ("L1", "L2", "L3", "L4")),
        "WIGAN-TC": sum(sum(Q3_COUNTS[c]) for c in ("W1", "W2")),
    }
    ward = get_json(analyst, COUNTS, {"boundary_set": "ward", "start": "2026-07-01", "end": "2026-10-01"})
    assert by_code(ward)["WB"] == by_code(ops)["WIGAN-TC"]
    assert 0 < by_code(ward)["WA"] < sum(sum(Q3_COUNTS[c]) for c in ("L2", "L4", "X1"))


def test_time_range_incident_types_and_record_types_filter(q3):
    analyst = q3.client("analyst")
    when = datetime(2026, 10, 5, 9, tzinfo=LONDON)
    centre = centre_of(BOXES["lsoa"]["L1"])
    q3.observations([(jittered(centre, k), when, {"incident_type": "noise"}) for k in range(4)]
                    + [(jittered(centre, k), when, {"incident_type": "fireworks"}) for k in range(2)]
                    + [(jittered(centre, k), when, {}) for k in range(3)])
    params = {"boundary_set": "lsoa", "areas": "L1", "period": "2026-10"}
    assert by_code(get_json(analyst, COUNTS, params)) == {"L1": 9}
    assert by_code(get_json(analyst, COUNTS, {**params, "incident_type": "noise"})) == {"L1": 4}
    assert by_code(get_json(analyst, COUNTS, {**params, "incident_type": "noise,fireworks"})) == {"L1": 6}
    assert by_code(get_json(analyst, COUNTS, {**params, "incident_type": ["noise", "fireworks"]})) == {"L1": 6}
    # start inclusive, end exclusive, to the second
    assert by_code(get_json(analyst, COUNTS, {"boundary_set": "lsoa", "areas": "L1",
                                              "start": "2026-10-05T09:00:00+01:00"})) == {"L1": 9}
    assert by_code(get_json(analyst, COUNTS, {"boundary_set": "lsoa", "areas": "L1",
                                              "start": "2026-10-01", "end": "2026-10-05T09:00:00+01:00"})) == {"L1": 0}

    audit = q3.street_audit(centre, when)
    q3.audit_item(audit, jittered(centre, 1), grade="B", issue_type="graffiti")
    q3.audit_item(audit, jittered(centre, 2))
    rejected = q3.street_audit(centre, when, review_state="rejected")
    q3.audit_item(rejected, jittered(centre, 3))
    gone = q3.street_audit(centre, when, deleted_at=when)
    q3.audit_item(gone, jittered(centre, 4))
    q3.audit_item(audit, jittered(centre, 5), deleted_at=when)
    assert by_code(get_json(analyst, COUNTS, {**params, "record_type": "street_audit"})) == {"L1": 1}
    assert by_code(get_json(analyst, COUNTS, {**params, "record_type": "audit_item"})) == {"L1": 2}


def test_a_record_on_a_shared_edge_counts_once_inside_and_nowhere_for_partners(q3):
    """Inside the partnership a point on the L1/L2 edge goes to the lower id (L1), as the
    area trigger does; partner counts take interiors only, so a location on the edge is in
    neither (the proof in docs/disclosure.md needs every counted record inside its area).
    Partners count the record's map point, which is in one of them."""
    on_edge = (-2.517, 53.500)
    q3.observation(on_edge, datetime(2026, 10, 5, 9, tzinfo=LONDON))
    counts = by_code(get_json(q3.client("analyst"), COUNTS, {"boundary_set": "lsoa", "period": "2026-10"}))
    assert counts["L1"] == 1 and counts["L2"] == 0
    family = [q3.sets[s].pk for s in ("partnership-areas", "lsoa")]
    cells = selectors.quarter_cell_counts(boundary_set_ids=family, record_type="observation",
                                          quarter=period_parse("2026-Q4"), map_point_m=None)
    l1, l2, leigh = (q3.areas[key].pk for key in (("lsoa", "L1"), ("lsoa", "L2"), ("partnership-areas", "LEIGH-TC")))
    assert (l1, 0) not in cells and (l2, 0) not in cells
    assert cells[(leigh, 0)] == cells[(leigh, QUARTER_INDEX)] == 1  # in LEIGH-TC's interior
    at_map_points = selectors.quarter_cell_counts(boundary_set_ids=family, record_type="observation",
                                                  quarter=period_parse("2026-Q4"), map_point_m=map_point_spacing_m())
    home = next(code for code in ("L1", "L2") if in_interior(BOXES["lsoa"][code], map_point(on_edge)))
    assert at_map_points[(q3.areas[("lsoa", home)].pk, 0)] == at_map_points[(leigh, 0)] == 1


def test_supervisors_count_the_records_of_their_own_areas(q3):
    supervisor = q3.client("supervisor_leigh")
    ops = get_json(supervisor, COUNTS, {"period": "2026-Q3"})
    assert by_code(ops) == {"LEIGH-TC": sum(sum(Q3_COUNTS[c]) for c in ("L1", "L2", "L3", "L4"))}
    lsoa = get_json(supervisor, COUNTS, {"boundary_set": "lsoa", "period": "2026-Q3"})
    assert by_code(lsoa) == {c: sum(Q3_COUNTS[c]) for c in ("L1", "L2", "L3", "L4")}  # X1 only touches Leigh
    assert lsoa["areas_in_scope"] == "yours"
    # WA overlaps Leigh partly: only its records in Leigh count for Leigh's supervisor.
    ward = by_code(get_json(supervisor, COUNTS, {"boundary_set": "ward", "period": "2026-Q3"}))
    analyst_ward = by_code(get_json(q3.client("analyst"), COUNTS, {"boundary_set": "ward", "period": "2026-Q3"}))
    assert set(ward) == {"WA"} and 0 < ward["WA"] < analyst_ward["WA"]
    body = get_json(supervisor, COUNTS, {"boundary_set": "lsoa", "areas": "W1"}, expect=400)
    assert body["fields"]["areas"][0]["code"] == "unknown_area"


def test_admins_count_everything(q3):
    body = get_json(q3.client("admin"), COUNTS, {"boundary_set": "lsoa", "period": "2026-07"})
    assert by_code(body) == {code: months[0] for code, months in Q3_COUNTS.items()}


def test_partner_counts_follow_the_threshold_and_rounding_settings(q3):
    partner = q3.client("partner_fire")
    params = {"boundary_set": "lsoa", "period": "2026-07"}
    with override_settings(DISCLOSURE_PARTNER_BOUNDARY_SETS=["partnership-areas", "lsoa"]):
        default = get_json(partner, COUNTS, params)
        assert default["disclosure"] == {
            "suppressed_below": 10, "rounded_to": 5, "method": "docs/disclosure.md",
            "locations": "every record at its map point, the centre of its 282.84 m cell of a fixed grid on the "
                         "British National Grid (EPSG:27700): no location is shown more precisely than 200 m",
        }
        # July: L1 12, L2 20, L3 9, L4 3, W1 40, W2 10, X1 0.
        assert by_code(default) == {"L1": 10, "L2": 20, "L3": None, "L4": None, "W1": 40, "W2": 10, "X1": None}
        with override_settings(DISCLOSURE_MIN_COUNT=15, DISCLOSURE_ROUND_TO=10):
            strict = get_json(partner, COUNTS, params)
        assert strict["disclosure"]["suppressed_below"] == 15 and strict["disclosure"]["rounded_to"] == 10
        assert by_code(strict) == {"L1": None, "L2": 20, "L3": None, "L4": None, "W1": 40, "W2": None, "X1": None}
        with override_settings(DISCLOSURE_MIN_COUNT=7):
            low = by_code(get_json(partner, COUNTS, params))
        assert low["L3"] == 10  # 9 rounds to 10; a 7 would be published as 10, never 5
    for row in default["areas"]:
        assert row["suppressed"] is (row["count"] is None)


def test_aggregates_write_no_consultation_log(q3):
    before = AccessLogEntry.objects.count()
    get_json(q3.client("analyst"), COUNTS, {"boundary_set": "lsoa"})
    get_json(q3.client("analyst"), "/api/v1/aggregates/hotspots", {"boundary_set": "lsoa"})
    get_json(q3.client("partner_fire"), COUNTS, {"boundary_set": "lsoa", "period": "2026-07"})
    assert AccessLogEntry.objects.count() == before


def test_selectors_read_from_the_database_they_are_given(q3):
    area = selectors.areas_of(boundary_set_ids=[q3.sets["lsoa"].pk], using="default")
    assert {row.code for row in area} == set(BOXES["lsoa"])
    counts = selectors.counts_by_area(areas=area, records=RecordFilter(), using="default")
    assert sum(row.count for row in counts) == sum(sum(m) for m in Q3_COUNTS.values()) + 2  # and June's two
    with pytest.raises(ConnectionDoesNotExist):
        selectors.counts_by_area(areas=area, records=RecordFilter(), using=f"replica-{uuid.uuid4().hex}")
    with pytest.raises(ConnectionDoesNotExist):
        selectors.hotspot_surface(region_area_ids=[area[0].id], point_area_ids=[area[0].id], records=RecordFilter(),
                                  bandwidth_m=250, cell_m=50, using="nowhere")
    with pytest.raises(ConnectionDoesNotExist):
        selectors.partner_quarter(family_set_ids=[q3.sets["lsoa"].pk], record_type="observation",
                                  period=period_parse("2026-07"), using="nowhere")


def test_truth_helpers_agree_with_the_fixture(q3):
    # The boxes and the jitter keep every fixture record inside the LSOA it was made for.
    centre = centre_of(BOXES["lsoa"]["L2"])
    assert all(in_interior(BOXES["lsoa"]["L2"], jittered(centre, k)) for k in range(500))
