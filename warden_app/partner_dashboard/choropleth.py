"""Colours of the partner maps: bands of published counts, hotspot classes, and withheld areas.

The bands are computed from the *published* values only — rounded counts, never a true count,
never a withheld cell — so a colour says nothing the table beside it does not: every page is a
function of the aggregates API's partner outputs, and the disclosure guarantee of those outputs
(docs/disclosure.md) holds for any combination of pages, colours included. A withheld area has
no band at all (it is hatched), whatever the reason it is withheld.
"""
from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from ..aggregates.disclosure import HOTSPOT_CLASSES

# Sequential blues for counts, light to dark (ColorBrewer's "Blues", five steps).
COUNT_COLOURS = ("#eff3ff", "#bdd7e7", "#6baed6", "#3182bd", "#08519c")
# Yellow to red for hotspot classes (ColorBrewer's "YlOrRd", five steps): another hue than the
# counts', so the two maps are never read as one scale.
CLASS_COLOURS = dict(zip(HOTSPOT_CLASSES, ("#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026"), strict=True))
CLASS_LABELS = {
    "low": "Low", "medium_low": "Medium-low", "medium": "Medium", "high": "High", "very_high": "Very high",
}
MOST_BANDS = len(COUNT_COLOURS)


@dataclass(frozen=True)
class Band:
    key: str
    low: int
    high: int
    colour: str

    @property
    def label(self) -> str:
        return f"{self.low}" if self.low == self.high else f"{self.low} to {self.high}"

    def holds(self, value: int) -> bool:
        return self.low <= value <= self.high


def count_bands(published: Sequence[int]) -> list[Band]:
    """At most five bands of the published counts, light to dark.

    Up to five distinct values: a band each. More: by quantile, the rule of the hotspot
    classes — a value goes to band k when the share of published areas with a smaller value
    lies in [k/5, (k+1)/5) — so equal values share a band and a larger value never gets a
    lighter one; empty bands are dropped. Bands are ranges of published values (multiples of
    the rounding base), so each is exactly the set of figures the table shows for it.
    """
    distinct = sorted(set(published))
    if not distinct:
        return []
    ordered = sorted(published)
    if len(distinct) <= MOST_BANDS:
        groups = [[value] for value in distinct]
    else:
        by_band: dict[int, list[int]] = {}
        for value in distinct:
            band = min(MOST_BANDS - 1, MOST_BANDS * bisect.bisect_left(ordered, value) // len(ordered))
            by_band.setdefault(band, []).append(value)
        groups = [by_band[k] for k in sorted(by_band)]
    shades = _spread(len(groups))
    return [
        Band(key=f"shade-{shades[k]}", low=group[0], high=group[-1], colour=COUNT_COLOURS[shades[k]])
        for k, group in enumerate(groups)
    ]


def _spread(n: int) -> list[int]:
    """Indices of n of the five colours, as far apart as they go; fewer than five skip the
    palest, too close to the withheld areas' pale ground (one band: the middle-dark one).
    The page's sheet has a class per colour (`shade-0`…): its policy allows no inline style."""
    if n == 1:
        return [3]
    if n >= len(COUNT_COLOURS):
        return list(range(len(COUNT_COLOURS)))
    first, last = 1, len(COUNT_COLOURS) - 1
    return [first + round(k * (last - first) / (n - 1)) for k in range(n)]


def band_of(value: int | None, bands: Sequence[Band]) -> Band | None:
    if value is None:
        return None
    return next((band for band in bands if band.holds(value)), None)
