"""A partnership with known geography and known counts, for the aggregate tests.

The demo partnership (users, teams, the operational set) with its two town centres made
exact boxes, plus two analysis geographies:

- `lsoa`: Leigh Town Centre cut into four quadrants L1..L4, Wigan Town Centre into two
  halves W1, W2, and X1 east of Leigh, outside every operational area. The operational
  areas are unions of LSOAs: the nested pair the differencing attack needs.
- `ward`: WA straddles Leigh's east edge (partial overlap with LEIGH-TC, L2, L4 and X1);
  WB is Wigan Town Centre exactly (equal areas in two sets).

Observations of 2026-Q3 per LSOA and month are `Q3_COUNTS` (L4 has 3 in July; L3's
9/12/12 is the case where independent rounding alone pins the small month).
"""
from __future__ import annotations

import functools
import itertools
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from django.contrib.gis.gdal import CoordTransform, SpatialReference
from django.contrib.gis.geos import MultiPolygon, Point, Polygon
from django.test import Client

LONDON = ZoneInfo("Europe/London")

# (lon_min, lat_min, lon_max, lat_max)
BOXES = {
    "partnership-areas": {
        "LEIGH-TC": (-2.525, 53.492, -2.509, 53.503),
        "WIGAN-TC": (-2.640, 53.540, -2.625, 53.550),
    },
    "lsoa": {
        "L1": (-2.525, 53.4975, -2.517, 53.503),
        "L2": (-2.517, 53.4975, -2.509, 53.503),
        "L3": (-2.525, 53.492, -2.517, 53.4975),
        "L4": (-2.517, 53.492, -2.509, 53.4975),
        "W1": (-2.640, 53.545, -2.625, 53.550),
        "W2": (-2.640, 53.540, -2.625, 53.545),
        "X1": (-2.509, 53.492, -2.497, 53.503),
    },
    "ward": {
        "WA": (-2.513, 53.492, -2.501, 53.503),
        "WB": (-2.640, 53.540, -2.625, 53.550),
    },
}
FINE = "lsoa"
# Observations per LSOA in July, August, September 2026.
Q3_COUNTS = {
    "L1": (12, 15, 3),
    "L2": (20, 22, 18),
    "L3": (9, 12, 12),
    "L4": (3, 25, 30),
    "W1": (40, 35, 44),
    "W2": (10, 11, 14),
    "X1": (0, 5, 17),
}
JUNE_COUNTS = {"L1": 2}
OUTSIDE_EVERY_AREA = (-2.300, 53.400)


def box_polygon(box) -> MultiPolygon:
    return MultiPolygon(Polygon.from_bbox(box), srid=4326)


def jittered(centre: tuple[float, float], k: int) -> tuple[float, float]:
    """The k-th point of a cluster about 200 m across; never on a box edge (the odd
    offsets keep it off every round coordinate)."""
    dx = ((k * 37) % 11 - 5) * 0.00031 + 0.000071
    dy = ((k * 53) % 9 - 4) * 0.00029 + 0.000053
    return centre[0] + dx, centre[1] + dy


def centre_of(box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def in_interior(box, lonlat) -> bool:
    return box[0] < lonlat[0] < box[2] and box[1] < lonlat[1] < box[3]


def month_moment(year: int, month: int, k: int) -> datetime:
    """A moment inside the month, spread over its days and hours (local time)."""
    return datetime(year, month, 1 + k % 27, 7 + k % 13, (k * 7) % 60, tzinfo=LONDON)


@dataclass
class Partnership:
    demo: object
    sets: dict  # slug -> BoundarySet
    areas: dict  # (slug, code) -> Area
    users: dict
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    def box(self, slug: str, code: str):
        return BOXES[slug][code]

    def observation(self, lonlat, when: datetime, **extra):
        from warden_app.models import Observation

        author = extra.pop("author", self.users["warden_leigh"])
        values = {
            "id": uuid.uuid4(), "author": author, "organisation": author.organisation,
            "form": self.demo.forms["observation"], "created_at": when, "updated_at": when,
            "location": Point(*lonlat, srid=4326), "qualifier": "nuisance",
            "incident_type": "street_drinking", "observed_at": when,
        }
        values.update(extra)
        return Observation.objects.create(**values)

    def observations(self, specs):
        """Bulk create from (lonlat, when, extra) tuples; the area trigger runs per row."""
        from warden_app.models import Observation

        author = self.users["warden_leigh"]
        rows = []
        for lonlat, when, extra in specs:
            values = {
                "id": uuid.uuid4(), "author": author, "organisation": author.organisation,
                "form": self.demo.forms["observation"], "created_at": when, "updated_at": when,
                "location": Point(*lonlat, srid=4326), "qualifier": "nuisance",
                "incident_type": "street_drinking", "observed_at": when,
            }
            values.update(extra)
            rows.append(Observation(**values))
        return Observation.objects.bulk_create(rows)

    def street_audit(self, lonlat, when: datetime, **extra):
        from warden_app.models import StreetAudit

        author = self.users["warden_leigh"]
        return StreetAudit.objects.create(
            id=uuid.uuid4(), author=author, organisation=author.organisation,
            form=self.demo.forms["street_audit"], created_at=when, updated_at=when,
            location=Point(*lonlat, srid=4326), started_at=when, **extra,
        )

    def audit_item(self, audit, lonlat, **extra):
        from warden_app.models import AuditItem

        values = {"issue_type": "fly_tipping", **extra}
        return AuditItem.objects.create(
            id=uuid.uuid4(), author=audit.author, organisation=audit.organisation, form=audit.form,
            created_at=audit.created_at, updated_at=audit.created_at, location=Point(*lonlat, srid=4326),
            street_audit=audit, **values,
        )

    def client(self, username: str) -> Client:
        client = Client()
        client.force_login(self.users[username])
        return client


def get_json(client: Client, path: str, params: dict | None = None, expect: int = 200):
    response = client.get(path, params or {})
    assert response.status_code == expect, (path, params, response.status_code, response.content[:500])
    return json.loads(response.content)


def true_range(published: int | None, *, minimum: int, base: int, suppressed_means_small: bool = False):
    """(lowest, highest) true count an outsider can infer from one published value alone.

    A withheld value says nothing (0..∞) where secondary suppression exists, since it may
    be withheld for another cell's sake; under plain suppression it means 0..minimum-1."""
    from warden_app.aggregates.disclosure import published_count

    if published is None:
        return (0, minimum - 1) if suppressed_means_small else (0, float("inf"))
    candidates = [n for n in range(published + base + 1) if published_count(n, minimum=minimum, base=base) == published]
    return min(candidates), max(candidates)


def consistent_small_values(
    *, parent: int | None, siblings, minimum: int, base: int, suppressed_means_small: bool = False
) -> set[int]:
    """The differencing attack: values v in 0..minimum-1 of a suppressed cell for which some
    true counts consistent with the published parent and siblings add up (parent = v + Σ)."""
    low_p, high_p = true_range(parent, minimum=minimum, base=base, suppressed_means_small=suppressed_means_small)
    ranges = [true_range(s, minimum=minimum, base=base, suppressed_means_small=suppressed_means_small)
              for s in siblings]
    low_s, high_s = sum(r[0] for r in ranges), sum(r[1] for r in ranges)
    return {v for v in range(minimum) if low_p - high_s <= v <= high_p - low_s}


@functools.cache
def to_bng() -> CoordTransform:
    """One transformation object: building one per point costs PROJ a pipeline each time."""
    return CoordTransform(SpatialReference(4326), SpatialReference(27700))


def bng(lonlat) -> tuple[float, float]:
    point = Point(*lonlat, srid=4326)
    point.transform(to_bng())
    return point.x, point.y


@functools.cache
def from_bng() -> CoordTransform:
    return CoordTransform(SpatialReference(27700), SpatialReference(4326))


def map_point_bng(lonlat, spacing: float | None = None) -> tuple[float, float]:
    """Where partner outputs put a record, in EPSG:27700: the centre of its cell of the
    map point grid (worked out here with GDAL, not by the code under test)."""
    s = spacing if spacing is not None else math.sqrt(2) * 200.0  # the default radius
    x, y = bng(lonlat)
    return (math.floor(x / s) + 0.5) * s, (math.floor(y / s) + 0.5) * s


def map_point(lonlat, spacing: float | None = None) -> tuple[float, float]:
    """The map point of a record, back in longitude and latitude."""
    point = Point(*map_point_bng(lonlat, spacing), srid=27700)
    point.transform(from_bng())
    return point.x, point.y


def numbers_outside_coordinates(value, path=()) -> list:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, int | float):
        return [] if "coordinates" in path else [(path, value)]
    if isinstance(value, dict):
        return [n for key, item in value.items() for n in numbers_outside_coordinates(item, (*path, key))]
    return [n for item in value for n in numbers_outside_coordinates(item, path)]
