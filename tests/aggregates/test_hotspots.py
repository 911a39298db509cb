"""Hotspots: the quartic kernel exactly, on a fixed metric grid, published as classes only."""
from __future__ import annotations

import itertools
import json
import math
from datetime import datetime

from django.contrib.gis.geos import GEOSGeometry, Polygon
from django.db import connection
from django.test import override_settings

from warden_app.aggregates import selectors
from warden_app.aggregates.disclosure import HOTSPOT_CLASSES, hotspot_classes
from warden_app.aggregates.selectors import RecordFilter
from warden_app.models import Area

from .support import (
    BOXES,
    LONDON,
    Q3_COUNTS,
    bng,
    centre_of,
    get_json,
    in_interior,
    numbers_outside_coordinates,
    to_bng,
)

AUGUST = RecordFilter(start=datetime(2026, 8, 1, tzinfo=LONDON), end=datetime(2026, 9, 1, tzinfo=LONDON))
OCTOBER = "2026-10"


def quartic(d2: float, h: float) -> float:
    return 3 / (math.pi * h * h) * (1 - d2 / (h * h)) ** 2 if d2 < h * h else 0.0


def lsoa_ids(partnership, codes=None) -> list[int]:
    return [area.pk for (slug, code), area in partnership.areas.items()
            if slug == "lsoa" and (codes is None or code in codes)]


def august_points_bng() -> list[tuple[float, float]]:
    """The August observations inside the LSOAs, as PostGIS puts them on the grid."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ST_X(ST_Transform(o.location, 27700)), ST_Y(ST_Transform(o.location, 27700)) "
            "FROM warden_app_observation o WHERE o.deleted_at IS NULL AND o.review_state <> 'rejected' "
            "AND o.observed_at >= %s AND o.observed_at < %s AND EXISTS (SELECT 1 FROM warden_app_area a "
            "JOIN warden_app_boundaryset b ON b.id = a.boundary_set_id WHERE b.slug = 'lsoa' "
            "AND ST_Intersects(a.geom, o.location))",
            [AUGUST.start, AUGUST.end],
        )
        return cursor.fetchall()


def test_density_is_the_quartic_kernel_exactly_on_the_british_national_grid(q3):
    h, c = 250.0, 50.0
    ids = lsoa_ids(q3)
    cells = selectors.hotspot_surface(region_area_ids=ids, point_area_ids=ids, records=AUGUST, bandwidth_m=h,
                                      cell_m=c, min_records=1)
    points = august_points_bng()
    assert len(points) == sum(months[1] for months in Q3_COUNTS.values())  # August
    # Metres, not degrees: PostGIS and GDAL agree on where the records are, to the millimetre.
    with connection.cursor() as cursor:
        cursor.execute("SELECT ST_X(location), ST_Y(location) FROM warden_app_observation "
                       "WHERE observed_at >= %s AND observed_at < %s", [AUGUST.start, AUGUST.end])
        lonlats = cursor.fetchall()
    ours = sorted(bng(lonlat) for lonlat in lonlats if any(in_interior(b, lonlat) for b in BOXES["lsoa"].values()))
    for (x1, y1), (x2, y2) in zip(ours, sorted(points), strict=True):
        assert abs(x1 - x2) < 1e-3 and abs(y1 - y2) < 1e-3

    region = None
    for area in Area.objects.filter(pk__in=ids):
        region = area.geom_bng if region is None else region.union(area.geom_bng)
    expected = {}
    for x, y in points:
        for i in range(math.floor((x - h) / c) - 1, math.floor((x + h) / c) + 2):
            for j in range(math.floor((y - h) / c) - 1, math.floor((y + h) / c) + 2):
                d2 = ((i + 0.5) * c - x) ** 2 + ((j + 0.5) * c - y) ** 2
                if d2 < h * h:
                    n, density = expected.get((i, j), (0, 0.0))
                    expected[(i, j)] = (n + 1, density + quartic(d2, h))
    def meets_region(i, j):
        square = Polygon.from_bbox((i * c, j * c, (i + 1) * c, (j + 1) * c))
        square.srid = 27700
        return region.intersection(square).area > 0

    expected = {cell: value for cell, value in expected.items() if meets_region(*cell)}
    got = {(cell.i, cell.j): (cell.records_within, cell.density) for cell in cells}
    assert got.keys() == expected.keys()
    for cell, (n, density) in expected.items():
        assert got[cell][0] == n
        assert math.isclose(got[cell][1], density, rel_tol=1e-12), cell
    assert len(got) > 500


def test_the_kernel_integrates_to_one(q3):
    """One record, far from any edge: the surface sums to 1 over the plane (3/(πh²) is the
    quartic kernel's normalising constant), and peaks at 3/(πh²)."""
    x1 = q3.areas[("lsoa", "X1")].pk
    q3.observation(centre_of(BOXES["lsoa"]["X1"]), datetime(2026, 10, 10, 12, tzinfo=LONDON))
    october = RecordFilter(start=datetime(2026, 10, 1, tzinfo=LONDON), end=datetime(2026, 11, 1, tzinfo=LONDON))
    h, c = 100.0, 5.0
    cells = selectors.hotspot_surface(region_area_ids=[x1], point_area_ids=[x1], records=october, bandwidth_m=h,
                                      cell_m=c, min_records=1)
    assert math.isclose(sum(cell.density for cell in cells) * c * c, 1.0, abs_tol=2e-3)
    assert max(cell.density for cell in cells) <= 3 / (math.pi * h * h)
    assert max(cell.density for cell in cells) > 0.999 * 3 / (math.pi * h * h)
    assert all(cell.records_within == 1 for cell in cells)


@override_settings(HOTSPOT_MIN_RECORDS=4)
def test_a_cell_needs_the_minimum_number_of_records_within_one_bandwidth(q3):
    analyst = q3.client("analyst")
    spot = centre_of(BOXES["lsoa"]["X1"])
    when = datetime(2026, 10, 10, 12, tzinfo=LONDON)
    params = {"boundary_set": "lsoa", "areas": "X1", "period": OCTOBER}
    q3.observations([(spot, when, {}) for _ in range(3)])
    assert get_json(analyst, "/api/v1/aggregates/hotspots", params)["features"] == []
    q3.observation(spot, when)
    body = get_json(analyst, "/api/v1/aggregates/hotspots", params)
    # Exactly the cells whose centre is within 250 m of the four records.
    x, y = bng(spot)
    within = [(i, j) for i in range(math.floor(x / 50) - 6, math.floor(x / 50) + 7)
              for j in range(math.floor(y / 50) - 6, math.floor(y / 50) + 7)
              if ((i + 0.5) * 50 - x) ** 2 + ((j + 0.5) * 50 - y) ** 2 < 250 ** 2]
    assert len(body["features"]) == len(within) > 50  # X1 is wider than 500 m: none clipped away
    assert "at least 4 records within one bandwidth" in body["published_cells"]


def test_published_maps_hold_classes_and_no_numbers(q3):
    body = get_json(q3.client("analyst"), "/api/v1/aggregates/hotspots", {"boundary_set": "lsoa", "period": "2026-Q3"})
    assert numbers_outside_coordinates(body) == []
    assert body["classes"] == list(HOTSPOT_CLASSES)
    assert body["bandwidth"] == "250 m" and body["cell_size"] == "50 m"
    classes = {feature["properties"]["class"] for feature in body["features"]}
    assert classes == set(HOTSPOT_CLASSES)
    assert all(set(feature["properties"]) == {"class"} for feature in body["features"])
    assert all(set(feature) == {"type", "geometry", "properties"} for feature in body["features"])


def test_denser_cells_never_get_a_lower_class(q3):
    ids = lsoa_ids(q3)
    cells = selectors.hotspot_surface(region_area_ids=ids, point_area_ids=ids, records=AUGUST, bandwidth_m=250,
                                      cell_m=50, min_records=10)
    classes = hotspot_classes([cell.density for cell in cells])
    rank = {name: k for k, name in enumerate(HOTSPOT_CLASSES)}
    ordered = sorted(zip((cell.density for cell in cells), classes, strict=True))
    assert all(rank[a[1]] <= rank[b[1]] for a, b in itertools.pairwise(ordered))
    # Quintiles: each class holds about a fifth of the published cells.
    for name in HOTSPOT_CLASSES:
        assert abs(classes.count(name) - len(cells) / 5) <= len(cells) / 10


def test_the_grid_does_not_move_with_the_request(q3):
    """Cell (i, j) is the same square whatever region is asked for: grids never shift, so
    two maps cannot be overlaid at an offset to split a cell."""
    l2, l4 = lsoa_ids(q3, {"L2"})[0], lsoa_ids(q3, {"L4"})[0]
    common = {"point_area_ids": [l2], "records": AUGUST, "bandwidth_m": 250, "cell_m": 50}
    alone = {(c.i, c.j): c.geometry for c in selectors.hotspot_surface(region_area_ids=[l2], **common)}
    wider = {(c.i, c.j): c.geometry for c in selectors.hotspot_surface(region_area_ids=[l2, l4], **common)}
    l2_bng = Area.objects.get(pk=l2).geom_bng
    whole = [ij for ij in alone if l2_bng.contains(Polygon.from_bbox((ij[0] * 50, ij[1] * 50,
                                                                      ij[0] * 50 + 50, ij[1] * 50 + 50)))]
    assert len(whole) > 20
    for ij in whole:
        assert alone[ij] == wider[ij]
        square = GEOSGeometry(alone[ij], srid=4326)
        square.transform(to_bng())
        assert math.isclose(square.area, 2500, abs_tol=1)  # coordinates are published to 1e-7 degree
        assert (math.floor(square.centroid.x / 50), math.floor(square.centroid.y / 50)) == ij


def test_filters_pick_the_records(q3):
    analyst = q3.client("analyst")
    base = {"boundary_set": "lsoa", "period": "2026-Q3"}
    assert get_json(analyst, "/api/v1/aggregates/hotspots", base)["features"]
    assert get_json(analyst, "/api/v1/aggregates/hotspots", {**base, "incident_type": "noise"})["features"] == []
    assert get_json(analyst, "/api/v1/aggregates/hotspots", {**base, "record_type": "street_audit"})["features"] == []
    in_july = get_json(analyst, "/api/v1/aggregates/hotspots",
                       {"boundary_set": "lsoa", "start": "2026-07-01", "end": "2026-08-01"})["features"]
    assert in_july and in_july != get_json(analyst, "/api/v1/aggregates/hotspots", base)["features"]


def test_partner_maps_leave_out_the_areas_whose_counts_are_withheld(q3):
    body = get_json(q3.client("partner_fire"), "/api/v1/aggregates/hotspots",
                    {"boundary_set": "lsoa", "period": "2026-07"})
    counts = get_json(q3.client("partner_fire"), "/api/v1/aggregates/counts",
                      {"boundary_set": "lsoa", "period": "2026-07"})
    withheld = {row["code"] for row in counts["areas"] if row["suppressed"]}
    assert set(body["suppressed_areas"]) == withheld and {"L3", "L4", "X1"} <= withheld
    assert body["features"] and numbers_outside_coordinates(body) == []
    for feature in body["features"]:
        cell = GEOSGeometry(json.dumps(feature["geometry"]))
        for code in withheld:
            assert cell.intersection(Polygon.from_bbox(BOXES["lsoa"][code])).area < 1e-12
