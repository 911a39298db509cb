"""The reads behind the aggregate endpoints: counts by area and hotspot surfaces, in SQL.

Every function takes `using`, the database alias to read from: results hold no personal
data (no consultation log is written), so they may be served from a read replica. The
geometry is PostGIS's: point-in-polygon on `geom` (EPSG:4326, the records' own SRID), the
hotspot grid and kernel in metres on the British National Grid (EPSG:27700).

Two audiences:
- inside the partnership (analysts, supervisors, admins): exact counts, free filters,
  each record counted once per boundary set (lowest area id on a shared edge, like the
  area trigger);
- partner viewers: whole boundary sets and whole months or quarters only, with the
  disclosure control of `disclosure.py`; a record counts in an area only if it lies in
  the area's interior, so a record on a boundary line is in no partner output at all
  (docs/disclosure.md says why the proof needs this); and every record is first moved to
  its map point (`RecordFilter.map_point_m`), so no partner output depends on where in its
  map point's cell a record lies.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from django.db import connections, transaction

from ..choices import ReviewState
from ..models import Area, AuditItem, BoundarySet, Observation, StreetAudit
from ..models.areas import BNG_SRID
from . import disclosure
from .disclosure import QUARTER_INDEX, Period, Rel

RECORD_TYPES = ("observation", "street_audit", "audit_item")
WGS84_SRID = 4326
# Coordinates of published cell polygons: 7 decimals of a degree is about 1 cm.
GEOJSON_DECIMALS = 7


@dataclass(frozen=True)
class RecordFilter:
    """Which records an aggregate counts. Rejected and deleted records never count."""

    record_type: str = "observation"
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    incident_types: tuple[str, ...] = ()  # observations only; empty means all
    # Operational areas whose records the caller may analyse; None means every record.
    scope_area_ids: frozenset[int] | None = None
    # Partner outputs: the spacing s of the map points (disclosure.map_point_spacing_m).
    # Each record is then at the centre of its s x s cell of the British National Grid,
    # and nothing computed from these rows can tell where in the cell it really is.
    map_point_m: float | None = None


@dataclass(frozen=True)
class AreaRow:
    id: int
    boundary_set_id: int
    code: str
    name: str


@dataclass(frozen=True)
class AreaCount:
    area: AreaRow
    count: int | None  # None: suppressed
    suppressed: bool = False


@dataclass(frozen=True)
class HotspotCell:
    """One grid cell of a density surface: (i, j) is the cell [i·c, (i+1)·c) x [j·c, (j+1)·c)
    in EPSG:27700 metres; `geometry` the cell clipped to the region, GeoJSON in EPSG:4326."""

    i: int
    j: int
    records_within: int  # records closer than one bandwidth to the cell centre
    density: float  # quartic kernel estimate at the centre, records per square metre
    geometry: str


@dataclass(frozen=True)
class HotspotMap:
    """What leaves the server: cell polygons and their classes, and not a number more."""

    features: list[tuple[dict, str]]  # (GeoJSON geometry, class)
    suppressed_areas: list[str] = field(default_factory=list)  # area codes left out


# --- records ---------------------------------------------------------------------------------


def _records_sql(records: RecordFilter) -> tuple[str, dict]:
    """SELECT id, location, t (the record's time) of the records `records` selects; with
    `map_point_m`, location is the record's map point, and x, y follow (the map point in
    EPSG:27700 metres)."""
    if records.record_type not in RECORD_TYPES:
        raise ValueError(f"unknown record type {records.record_type!r}")
    params: dict = {"r_rejected": ReviewState.REJECTED.value}
    if records.record_type == "audit_item":
        # Items are reviewed with their audit and happen when it does.
        sql = (
            f"SELECT r.id, r.location, s.started_at AS t FROM {AuditItem._meta.db_table} r "
            f"JOIN {StreetAudit._meta.db_table} s ON s.id = r.street_audit_id "
            "WHERE r.deleted_at IS NULL AND s.deleted_at IS NULL AND s.review_state <> %(r_rejected)s"
        )
        time = "s.started_at"
    else:
        model, time = (
            (Observation, "r.observed_at") if records.record_type == "observation" else (StreetAudit, "r.started_at")
        )
        sql = (
            f"SELECT r.id, r.location, {time} AS t FROM {model._meta.db_table} r "
            "WHERE r.deleted_at IS NULL AND r.review_state <> %(r_rejected)s"
        )
        if model is Observation:  # restricted by the DPO: kept, but not used for analysis
            sql += " AND NOT r.processing_restricted"
    if records.start is not None:
        sql += f" AND {time} >= %(r_start)s"
        params["r_start"] = records.start
    if records.end is not None:
        sql += f" AND {time} < %(r_end)s"
        params["r_end"] = records.end
    if records.incident_types:
        if records.record_type != "observation":
            raise ValueError("incident types filter observations only")
        sql += " AND r.incident_type = ANY(%(r_incident_types)s::text[])"
        params["r_incident_types"] = list(records.incident_types)
    if records.scope_area_ids is not None:
        sql += " AND r.area_id = ANY(%(r_scope)s::bigint[])"
        params["r_scope"] = sorted(records.scope_area_ids)
    if records.map_point_m is not None:
        return _at_map_points(sql, params, records.map_point_m)
    return sql, params


def _at_map_points(sql: str, params: dict, spacing: float) -> tuple[str, dict]:
    """The same rows with each location replaced by its map point: the centre
    ((i + ½)·s, (j + ½)·s) of the cell [i·s, (i+1)·s) x [j·s, (j+1)·s) of the British National
    Grid holding it. The true location goes no further than this subquery."""
    if not (math.isfinite(spacing) and spacing > 0):
        raise ValueError("the map point spacing is a positive number of metres")
    params = {**params, "mp_s": float(spacing), "mp_bng": BNG_SRID, "mp_wgs84": WGS84_SRID}
    wrapped = (
        "SELECT g.id, ST_Transform(ST_SetSRID(ST_MakePoint(g.x, g.y), %(mp_bng)s), %(mp_wgs84)s) AS location, "
        "g.t, g.x, g.y FROM ("
        "  SELECT c.id, c.t, (floor(ST_X(c.p) / %(mp_s)s::float8) + 0.5) * %(mp_s)s::float8 AS x,"
        "         (floor(ST_Y(c.p) / %(mp_s)s::float8) + 0.5) * %(mp_s)s::float8 AS y"
        f"  FROM (SELECT r.id, r.t, ST_Transform(r.location, %(mp_bng)s) AS p FROM ({sql}) r) c"
        ") g"
    )
    return wrapped, params


def _fetch(using: str, sql: str, params: dict) -> list[tuple]:
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- geographies ----------------------------------------------------------------------------


def boundary_sets(*, slugs: Iterable[str] | None = None, using: str = "default") -> list[BoundarySet]:
    queryset = BoundarySet.objects.using(using).order_by("name")
    if slugs is not None:
        queryset = queryset.filter(slug__in=list(slugs))
    return list(queryset)


def areas_of(
    *,
    boundary_set_ids: Sequence[int],
    codes: Sequence[str] | None = None,
    scope_area_ids: frozenset[int] | None = None,
    using: str = "default",
) -> list[AreaRow]:
    """Areas of the sets, by code; with a scope, only those whose interior meets one of
    the scope's (operational) areas."""
    area = Area._meta.db_table
    sql = (
        f"SELECT a.id, a.boundary_set_id, a.code, a.name FROM {area} a "
        "WHERE a.boundary_set_id = ANY(%(sets)s::bigint[])"
    )
    params: dict = {"sets": list(boundary_set_ids)}
    if codes is not None:
        sql += " AND a.code = ANY(%(codes)s::text[])"
        params["codes"] = list(codes)
    if scope_area_ids is not None:
        sql += (
            f" AND EXISTS (SELECT 1 FROM {area} s WHERE s.id = ANY(%(scope)s::bigint[])"
            " AND s.geom && a.geom AND ST_Relate(s.geom, a.geom, 'T********'))"
        )
        params["scope"] = sorted(scope_area_ids)
    sql += " ORDER BY a.code, a.id"
    return [AreaRow(*row) for row in _fetch(using, sql, params)]


def area_relations(*, boundary_set_ids: Sequence[int], using: str = "default") -> dict[int, dict[int, Rel]]:
    """For every two areas of the sets whose interiors meet: how each lies relative to the
    other (`result[a][b]` is b's relation to a). Exact topology, no tolerance: a sliver
    makes two areas overlap partially, which withholds more, never less."""
    area = Area._meta.db_table
    rows = _fetch(
        using,
        f"SELECT a.id, b.id, ST_Covers(a.geom, b.geom), ST_Covers(b.geom, a.geom) FROM {area} a "
        f"JOIN {area} b ON a.id < b.id AND a.geom && b.geom AND ST_Relate(a.geom, b.geom, 'T********') "
        "WHERE a.boundary_set_id = ANY(%(sets)s::bigint[]) AND b.boundary_set_id = ANY(%(sets)s::bigint[])",
        {"sets": list(boundary_set_ids)},
    )
    relations: dict[int, dict[int, Rel]] = {}
    for a, b, a_covers_b, b_covers_a in rows:
        if a_covers_b and b_covers_a:
            forward = backward = Rel.EQUAL
        elif a_covers_b:
            forward, backward = Rel.INSIDE, Rel.CONTAINS
        elif b_covers_a:
            forward, backward = Rel.CONTAINS, Rel.INSIDE
        else:
            forward = backward = Rel.PARTIAL
        relations.setdefault(a, {})[b] = forward
        relations.setdefault(b, {})[a] = backward
    return relations


# --- counts -------------------------------------------------------------------------------------


def counts_by_area(
    *, areas: Sequence[AreaRow], records: RecordFilter, using: str = "default"
) -> list[AreaCount]:
    """Exact counts for people inside the partnership.

    Each record is placed in one area per boundary set: among the areas of the sets of
    `areas` that contain or touch its location, the lowest id (the area trigger's rule).
    """
    if not areas:
        return []
    record_sql, params = _records_sql(records)
    area = Area._meta.db_table
    params["sets"] = sorted({row.boundary_set_id for row in areas})
    params["wanted"] = [row.id for row in areas]
    rows = _fetch(
        using,
        f"WITH r AS ({record_sql}), placed AS ("
        f"  SELECT DISTINCT ON (a.boundary_set_id, r.id) a.id AS area_id FROM r "
        f"  JOIN {area} a ON a.boundary_set_id = ANY(%(sets)s::bigint[]) AND ST_Intersects(a.geom, r.location) "
        "  ORDER BY a.boundary_set_id, r.id, a.id) "
        "SELECT area_id, count(*) FROM placed WHERE area_id = ANY(%(wanted)s::bigint[]) GROUP BY area_id",
        params,
    )
    counts = dict(rows)
    return [AreaCount(area=row, count=counts.get(row.id, 0)) for row in areas]


def quarter_cell_counts(
    *,
    boundary_set_ids: Sequence[int],
    record_type: str,
    quarter: Period,
    map_point_m: float | None,
    using: str = "default",
) -> dict[tuple[int, int], int]:
    """True counts of every (area, period index) cell of a quarter, for partner publication:
    a record counts where its location — its map point, given `map_point_m` as partner
    outputs always do — is in an area's interior (ST_Contains)."""
    months = quarter.months_of_quarter
    record_sql, params = _records_sql(
        RecordFilter(record_type=record_type, start=quarter.start, end=quarter.end, map_point_m=map_point_m)
    )
    params.update(sets=list(boundary_set_ids), second=months[1].start, third=months[2].start)
    rows = _fetch(
        using,
        f"WITH r AS ({record_sql}) "
        "SELECT a.id, CASE WHEN r.t < %(second)s THEN 0 WHEN r.t < %(third)s THEN 1 ELSE 2 END AS m, count(*) "
        f"FROM r JOIN {Area._meta.db_table} a ON a.boundary_set_id = ANY(%(sets)s::bigint[]) "
        "AND ST_Contains(a.geom, r.location) GROUP BY 1, 2",
        params,
    )
    counts: dict[tuple[int, int], int] = {}
    for area_id, month, n in rows:
        counts[(area_id, month)] = n
        counts[(area_id, QUARTER_INDEX)] = counts.get((area_id, QUARTER_INDEX), 0) + n
    return counts


@dataclass(frozen=True)
class PartnerQuarter:
    """Everything partners may be shown for one record type and quarter, before output."""

    areas: list[AreaRow]  # of every boundary set partners see
    counts: dict[tuple[int, int], int]
    withheld: frozenset[tuple[int, int]]


def partner_quarter(
    *, family_set_ids: Sequence[int], record_type: str, period: Period, using: str = "default"
) -> PartnerQuarter:
    """True counts (of records at their map points) and withheld cells of the quarter
    holding `period`, over the whole family of boundary sets partners see: a cell's fate
    depends on cells of other sets."""
    quarter = period.whole_quarter
    areas = areas_of(boundary_set_ids=family_set_ids, using=using)
    counts = quarter_cell_counts(
        boundary_set_ids=family_set_ids, record_type=record_type, quarter=quarter,
        map_point_m=disclosure.map_point_spacing_m(), using=using,
    )
    withheld = disclosure.withheld_cells(
        counts=counts,
        areas=[row.id for row in areas],
        relations=area_relations(boundary_set_ids=family_set_ids, using=using),
        minimum=disclosure.min_count(),
    )
    return PartnerQuarter(areas=areas, counts=counts, withheld=withheld)  # type: ignore[arg-type]


def partner_counts(
    *,
    boundary_set: BoundarySet,
    family_set_ids: Sequence[int],
    record_type: str,
    period: Period,
    using: str = "default",
) -> list[AreaCount]:
    """Counts of one whole boundary set in one whole month or quarter, as partners see
    them: withheld cells as None, the rest rounded."""
    state = partner_quarter(family_set_ids=family_set_ids, record_type=record_type, period=period, using=using)
    index = period.index_in_quarter
    minimum, base = disclosure.min_count(), disclosure.round_to()
    result = []
    for row in state.areas:
        if row.boundary_set_id != boundary_set.pk:
            continue
        cell = (row.id, index)
        if cell in state.withheld:
            result.append(AreaCount(area=row, count=None, suppressed=True))
        else:
            published = disclosure.published_count(state.counts.get(cell, 0), minimum=minimum, base=base)
            # The closure withholds every small cell, so this never happens; if it did,
            # withholding is the safe answer.
            if published is None:
                result.append(AreaCount(area=row, count=None, suppressed=True))
            else:
                result.append(AreaCount(area=row, count=published))
    return result


# --- hotspots ------------------------------------------------------------------------------


def hotspot_surface(
    *,
    region_area_ids: Sequence[int],
    point_area_ids: Sequence[int],
    records: RecordFilter,
    bandwidth_m: float,
    cell_m: float,
    min_records: int = 1,
    interior_only: bool = False,
    using: str = "default",
) -> list[HotspotCell]:
    """Quartic kernel density estimate on the British National Grid.

    The grid is fixed: cell (i, j) is [i·c, (i+1)·c) x [j·c, (j+1)·c) in EPSG:27700, so two
    requests never shift it. Points are the selected records lying in `point_area_ids`
    (in the interior only, if asked), transformed to EPSG:27700 by PostGIS, or their map
    points if `records` names a spacing. At each cell centre, exactly

        density = Σ 3/(π h²) · (1 - d²/h²)²   over the points with d < h,

    d the distance in metres and h the bandwidth; `records_within` is the number of those
    points. Points at the same place are summed as one, with its weight; map points are
    summed in coordinate order, so a partner map depends on the multiset of map points
    only, to the last bit, not on the order rows come in.

    Returned: the cells whose interior meets the union of `region_area_ids`, with
    at least `min_records` points within h, clipped to that union.
    """
    if not region_area_ids or not point_area_ids:
        return []
    record_sql, params = _records_sql(records)
    area = Area._meta.db_table
    inside = "ST_Contains" if interior_only else "ST_Intersects"
    if records.map_point_m is not None:  # the rows carry their map point in metres
        xy, to_bng = "r.x, r.y", ""
        # A fixed order of summation: a partner map must not change when only the order
        # rows are read in does (an update moves a row). Few points, so the sort is cheap;
        # inside the partnership it would cost a quarter of the time, for nothing.
        in_order = "ORDER BY x, y"
    else:
        in_order = ""
        xy = "ST_X(b.p) AS x, ST_Y(b.p) AS y"
        to_bng = "CROSS JOIN LATERAL (SELECT ST_Transform(r.location, %(bng)s) AS p) b"
    params.update(
        region=list(region_area_ids), points=list(point_area_ids), h=float(bandwidth_m), c=float(cell_m),
        min_records=int(min_records), bng=BNG_SRID, wgs84=WGS84_SRID, decimals=GEOJSON_DECIMALS,
    )
    # Each point reaches the cells whose centres lie within h: at most `reach` cells away
    # from its own cell in each direction.
    params["reach"] = math.ceil(float(bandwidth_m) / float(cell_m)) + 1
    sql = f"""
    WITH region AS MATERIALIZED (
        SELECT ST_Union(geom_bng) AS g FROM {area} WHERE id = ANY(%(region)s::bigint[])
    ), pts AS MATERIALIZED (
        SELECT x, y, count(*) AS w FROM (
            SELECT {xy} FROM ({record_sql}) r {to_bng}
            WHERE EXISTS (SELECT 1 FROM {area} a WHERE a.id = ANY(%(points)s::bigint[])
                          AND {inside}(a.geom, r.location))
        ) q GROUP BY x, y
    ), steps AS MATERIALIZED (
        SELECT generate_series(-%(reach)s::int, %(reach)s::int) AS step
    ), offsets AS (
        SELECT ci.i, cj.j, pts.x, pts.y, pts.w,
               (ci.i + 0.5::float8) * %(c)s::float8 - pts.x AS dx,
               (cj.j + 0.5::float8) * %(c)s::float8 - pts.y AS dy
        FROM pts
        CROSS JOIN LATERAL (SELECT floor(pts.x / %(c)s::float8)::int + step AS i FROM steps) ci
        CROSS JOIN LATERAL (SELECT floor(pts.y / %(c)s::float8)::int + step AS j FROM steps) cj
    ), surface AS (
        SELECT i, j, sum(w) AS n,
               sum(w * (1 - (dx * dx + dy * dy) / (%(h)s::float8 * %(h)s::float8))
                     * (1 - (dx * dx + dy * dy) / (%(h)s::float8 * %(h)s::float8)) {in_order})
               * 3 / (pi() * %(h)s::float8 * %(h)s::float8) AS density
        FROM offsets WHERE dx * dx + dy * dy < %(h)s::float8 * %(h)s::float8
        GROUP BY i, j HAVING sum(w) >= %(min_records)s
    )
    SELECT i, j, n, density, ST_AsGeoJSON(ST_Transform(clipped, %(wgs84)s), %(decimals)s) FROM (
        SELECT s.i, s.j, s.n, s.density,
               CASE WHEN ST_Covers(region.g, cell.g) THEN cell.g
                    ELSE ST_CollectionExtract(ST_Intersection(cell.g, region.g), 3) END AS clipped
        FROM surface s CROSS JOIN region
        CROSS JOIN LATERAL (
            SELECT ST_MakeEnvelope(s.i * %(c)s::float8, s.j * %(c)s::float8,
                                   (s.i + 1) * %(c)s::float8, (s.j + 1) * %(c)s::float8, %(bng)s) AS g
        ) cell
        WHERE ST_Intersects(region.g, cell.g)
    ) published
    -- A cell touching the region only along an edge or at a corner has no area in it.
    WHERE NOT ST_IsEmpty(clipped)
    ORDER BY j, i
    """
    # One analytic query: PostgreSQL's JIT would spend longer compiling it than running it.
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [HotspotCell(i, j, n, density, geometry) for i, j, n, density, geometry in rows]


def region_area_m2(*, area_ids: Sequence[int], using: str = "default") -> float:
    """Area of the union of the areas, square metres (to bound a grid before building it)."""
    if not area_ids:
        return 0.0
    rows = _fetch(
        using,
        f"SELECT coalesce(ST_Area(ST_Union(geom_bng)), 0) FROM {Area._meta.db_table} WHERE id = ANY(%(ids)s::bigint[])",
        {"ids": list(area_ids)},
    )
    return float(rows[0][0])


def hotspot_map(cells: Sequence[HotspotCell], *, suppressed_areas: Sequence[str] = ()) -> HotspotMap:
    """Cells to classes; densities and counts stop here."""
    classes = disclosure.hotspot_classes([cell.density for cell in cells])
    return HotspotMap(
        features=[(orjson.loads(cell.geometry), cls) for cell, cls in zip(cells, classes, strict=True)],
        suppressed_areas=list(suppressed_areas),
    )


def partner_hotspots(
    *,
    boundary_set: BoundarySet,
    family_set_ids: Sequence[int],
    record_type: str,
    period: Period,
    using: str = "default",
) -> HotspotMap:
    """The hotspot map partners see for one whole boundary set and period.

    Areas whose count cell is withheld are left out altogether, their records as well as
    their ground: the map is then a function of records that published counts already
    cover, so it cannot reveal what the counts withhold. Records are at their map points,
    like the counts': no bandwidth, cell size or period can then place them more precisely
    than their map point's cell. Bandwidth, cell size and the minimum are the settings',
    never the caller's.
    """
    state = partner_quarter(family_set_ids=family_set_ids, record_type=record_type, period=period, using=using)
    index = period.index_in_quarter
    own = [row for row in state.areas if row.boundary_set_id == boundary_set.pk]
    shown = [row.id for row in own if (row.id, index) not in state.withheld]
    cells = hotspot_surface(
        region_area_ids=shown,
        point_area_ids=shown,
        records=RecordFilter(
            record_type=record_type, start=period.start, end=period.end, map_point_m=disclosure.map_point_spacing_m()
        ),
        bandwidth_m=disclosure.hotspot_bandwidth_m(),
        cell_m=disclosure.hotspot_cell_m(),
        min_records=disclosure.hotspot_min_records(),
        interior_only=True,
        using=using,
    )
    return hotspot_map(cells, suppressed_areas=[row.code for row in own if (row.id, index) in state.withheld])
