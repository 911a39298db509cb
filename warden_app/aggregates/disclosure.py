"""Disclosure control for aggregates that leave the partnership (docs/disclosure.md).

Pure rules, no database: the settings, fixed periods, small-count suppression and rounding,
the secondary suppression that defeats differencing, and hotspot classes.

The unit of publication is a *cell*: one area of a boundary set in one fixed period (a
calendar month or quarter). A cell is withheld when it is small (primary suppression) or
when publishing it could let a withheld cell be worked out (secondary suppression): a
withheld cell withholds every cell of the same or a longer period whose area meets its
area and is not strictly inside it, to a fixed point. `withheld_cells` is that closure;
docs/disclosure.md proves that it leaves every value 0..threshold-1 possible for every
small cell, whatever else partners are shown.
"""
from __future__ import annotations

import bisect
import math
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# --- settings ------------------------------------------------------------------------------


def min_count() -> int:
    """Counts below this are suppressed (DISCLOSURE_MIN_COUNT, ONS practice: 10)."""
    return max(1, int(getattr(settings, "DISCLOSURE_MIN_COUNT", 10)))


def round_to() -> int:
    """Published counts are rounded to a multiple of this (DISCLOSURE_ROUND_TO, default 5)."""
    return max(1, int(getattr(settings, "DISCLOSURE_ROUND_TO", 5)))


def settle_days() -> int:
    """Partners get a period only this many days after it ended (late syncs land first)."""
    return max(0, int(getattr(settings, "DISCLOSURE_SETTLE_DAYS", 7)))


def partner_boundary_set_slugs() -> frozenset[str] | None:
    """The boundary sets partners may see; None (the default) means every set."""
    slugs = getattr(settings, "DISCLOSURE_PARTNER_BOUNDARY_SETS", None)
    return frozenset(slugs) if slugs else None


def location_radius_m() -> float:
    """No partner output locates a record, or any group of records, more precisely than
    this (DISCLOSURE_LOCATION_RADIUS_M, default 200 m): see `map_point_spacing_m`."""
    radius = float(getattr(settings, "DISCLOSURE_LOCATION_RADIUS_M", 200.0))
    if not 1.0 <= radius <= 100_000.0:  # settings.py refuses these at start-up already
        raise ImproperlyConfigured("DISCLOSURE_LOCATION_RADIUS_M is a number of metres from 1 to 100000.")
    return radius


def map_point_spacing_m() -> float:
    """The spacing s of the map points every partner output is computed from.

    Before anything a partner sees is computed, each record is moved to the centre of its
    cell of a fixed s x s grid on the British National Grid (EPSG:27700): the cell
    [i·s, (i+1)·s) x [j·s, (j+1)·s) has the map point ((i + ½)·s, (j + ½)·s). Partner
    outputs are functions of the map points only, so every location in a cell gives the
    same outputs, byte for byte: the most any combination of them tells is the cell. The
    smallest disc certain to hold a cell is its circumscribed disc, of radius s/√2, and
    any estimate is at least s/√2 from one of the cell's corners; so

        s = √2 · R,   R = DISCLOSURE_LOCATION_RADIUS_M (200 m: s ≈ 282.84 m),

    and no location is known more precisely than R (docs/disclosure.md, "Locations").
    """
    return math.sqrt(2.0) * location_radius_m()


def hotspot_min_records() -> int:
    """A hotspot cell is published only with at least this many records within a bandwidth."""
    return max(1, int(getattr(settings, "HOTSPOT_MIN_RECORDS", 10)))


def hotspot_bandwidth_m() -> float:
    return float(getattr(settings, "HOTSPOT_BANDWIDTH_M", 250.0))


def hotspot_cell_m() -> float:
    return float(getattr(settings, "HOTSPOT_CELL_M", 50.0))


# --- suppression and rounding --------------------------------------------------------------


def published_count(true_count: int, *, minimum: int, base: int) -> int | None:
    """The value a partner sees: None below `minimum`, else the nearest multiple of `base`
    (halves up), never below `minimum`: with minimum 7 and base 5 a 7 is published as 10,
    since publishing 5 would say "exactly 7"."""
    if true_count < minimum:
        return None
    rounded = (true_count + base // 2) // base * base
    smallest = -(-minimum // base) * base
    return max(rounded, smallest)


# --- fixed periods --------------------------------------------------------------------------

# ASCII digits (\d would take "٢٠٢٦" as 2026), the whole text (`$` matches before a newline).
MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
QUARTER = re.compile(r"([0-9]{4})-Q([1-4])")
# Index of the quarter among a quarter's four cells (its months are 0, 1 and 2).
QUARTER_INDEX = 3


def local_zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


@dataclass(frozen=True)
class Period:
    """A calendar month or quarter in the partnership's time zone; `end` is exclusive."""

    year: int
    quarter: int  # 1..4
    month: int | None  # 1..12 for a month, None for the quarter itself

    @property
    def label(self) -> str:
        return f"{self.year}-{self.month:02d}" if self.month else f"{self.year}-Q{self.quarter}"

    @property
    def is_month(self) -> bool:
        return self.month is not None

    @property
    def start(self) -> datetime:
        month = self.month or 3 * self.quarter - 2
        return datetime(self.year, month, 1, tzinfo=local_zone())

    @property
    def end(self) -> datetime:
        last = self.month or 3 * self.quarter
        if last == 12:
            return datetime(self.year + 1, 1, 1, tzinfo=local_zone())
        return datetime(self.year, last + 1, 1, tzinfo=local_zone())

    @property
    def whole_quarter(self) -> Period:
        return Period(self.year, self.quarter, None)

    @property
    def months_of_quarter(self) -> tuple[Period, Period, Period]:
        first = 3 * self.quarter - 2
        return tuple(Period(self.year, self.quarter, first + k) for k in range(3))  # type: ignore[return-value]

    @property
    def index_in_quarter(self) -> int:
        """0, 1, 2 for the months of a quarter, QUARTER_INDEX for the quarter."""
        return QUARTER_INDEX if self.month is None else (self.month - 1) % 3

    def __str__(self) -> str:
        return self.label


def period_parse(text: str) -> Period:
    """`2026-11` (a month) or `2026-Q4` (a quarter); ValueError otherwise."""
    if match := MONTH.fullmatch(text):
        year, month = int(match[1]), int(match[2])
        if not 1 <= month <= 12:
            raise ValueError("the month must be 01 to 12")
        period = Period(year, (month - 1) // 3 + 1, month)
    elif match := QUARTER.fullmatch(text):
        period = Period(int(match[1]), int(match[2]), None)
    else:
        raise ValueError("a period is a calendar month (2026-11) or quarter (2026-Q4)")
    if not 2000 <= period.year <= 2999:
        raise ValueError("the year is out of range")
    return period


# --- secondary suppression ---------------------------------------------------------------


class Rel(Enum):
    """How one area lies relative to another, by their interiors."""

    EQUAL = "equal"
    INSIDE = "inside"  # the other one is inside this one
    CONTAINS = "contains"  # the other one contains this one
    PARTIAL = "partial"  # interiors meet, neither contains the other


def withheld_cells(
    *,
    counts: Mapping[tuple[Hashable, int], int],
    areas: Iterable[Hashable],
    relations: Mapping[Hashable, Mapping[Hashable, Rel]],
    minimum: int,
) -> frozenset[tuple[Hashable, int]]:
    """The cells (area, period index) of one quarter that partners must not see.

    `relations[a][b]` says how area b lies relative to area a (pairs whose interiors do
    not meet are absent; an area need not list itself). `counts` holds the true count of
    each cell; a missing cell counts 0.

    Primary: every cell below `minimum`. Secondary, to a fixed point: a withheld cell
    (a, p) withholds every cell (b, q) of the same or a longer period (q ⊇ p) whose area
    meets a and is not strictly inside it (b equal to a, containing it, or partly
    overlapping it). So a quarter goes with a withheld month, a coarse area with a
    withheld fine area inside it, and a partly overlapping area with either. Cells inside
    a withheld cell are left alone: any of them that shares records with a small cell is
    small itself, or holds a small cell, and goes by that cell's rule (docs/disclosure.md).
    """
    cells = [(area, index) for area in areas for index in range(QUARTER_INDEX + 1)]
    withheld = {cell for cell in cells if counts.get(cell, 0) < minimum}
    pending = list(withheld)
    while pending:
        area, index = pending.pop()
        neighbours = dict(relations.get(area, {}))
        neighbours[area] = Rel.EQUAL
        longer = (index,) if index == QUARTER_INDEX else (index, QUARTER_INDEX)
        for other, space in neighbours.items():
            if space is Rel.INSIDE:
                continue
            for other_index in longer:
                cell = (other, other_index)
                if cell not in withheld:
                    withheld.add(cell)
                    pending.append(cell)
    return frozenset(withheld)


# --- hotspot classes -------------------------------------------------------------------------

HOTSPOT_CLASSES = ("low", "medium_low", "medium", "high", "very_high")
CLASS_METHOD = "quintiles of the published cells' densities"


def hotspot_classes(densities: Sequence[float]) -> list[str]:
    """Five classes by quintile: a cell is in class k when the share of published cells
    strictly less dense than it lies in [k/5, (k+1)/5). Equal densities share a class,
    and a denser cell never gets a lower class."""
    if not densities:
        return []
    top = max(densities)
    # Sums of the same terms in another order differ in the last bits; such ties are ties.
    keys = [round(d / top, 9) if top > 0 else 0.0 for d in densities]
    ordered = sorted(keys)
    n = len(ordered)
    return [HOTSPOT_CLASSES[min(4, 5 * bisect.bisect_left(ordered, key) // n)] for key in keys]
