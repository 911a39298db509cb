"""Fixtures for the aggregate tests: the partnership of `support.py`, with and without records."""
from __future__ import annotations

import itertools

import pytest
from django.core.cache import cache

from .support import (
    BOXES,
    FINE,
    JUNE_COUNTS,
    OUTSIDE_EVERY_AREA,
    Q3_COUNTS,
    Partnership,
    box_polygon,
    centre_of,
    jittered,
    month_moment,
)


@pytest.fixture
def partnership(db) -> Partnership:
    """The demo partnership with exact boxes and the `lsoa` and `ward` sets; no records."""
    from warden_app.models import Area, BoundarySet
    from warden_app.services.demo import demo_seed

    cache.clear()
    demo = demo_seed()
    sets = {"partnership-areas": demo.boundary_set}
    areas = {}
    for code, area in demo.areas.items():
        Area.objects.filter(pk=area.pk).update(geom=box_polygon(BOXES["partnership-areas"][code]))
        areas[("partnership-areas", code)] = Area.objects.get(pk=area.pk)
    for slug in ("lsoa", "ward"):
        sets[slug] = BoundarySet.objects.create(name=slug.upper(), slug=slug, operational=False)
        for code, box in BOXES[slug].items():
            areas[(slug, code)] = Area.objects.create(
                boundary_set=sets[slug], name=f"{slug} {code}", code=code, geom=box_polygon(box)
            )
    return Partnership(demo=demo, sets=sets, areas=areas, users=dict(demo.users))


@pytest.fixture
def q3(partnership) -> Partnership:
    """`partnership` with the 2026-Q3 observations of Q3_COUNTS, June's few, and records
    that must never count: rejected, deleted, outside every area."""
    specs = []
    k = itertools.count()
    for code, months in Q3_COUNTS.items():
        centre = centre_of(BOXES[FINE][code])
        for month, n in zip((7, 8, 9), months, strict=True):
            for _ in range(n):
                i = next(k)
                specs.append((jittered(centre, i), month_moment(2026, month, i), {}))
    for code, n in JUNE_COUNTS.items():
        for _ in range(n):
            i = next(k)
            specs.append((jittered(centre_of(BOXES[FINE][code]), i), month_moment(2026, 6, i), {}))
    # Never counted: rejected or deleted records, and one outside every area.
    for _ in range(5):
        i = next(k)
        rejected = {"review_state": "rejected"}
        specs.append((jittered(centre_of(BOXES[FINE]["W1"]), i), month_moment(2026, 7, i), rejected))
    i = next(k)
    specs.append((jittered(centre_of(BOXES[FINE]["L3"]), i), month_moment(2026, 7, i),
                  {"deleted_at": month_moment(2026, 7, i)}))
    specs.append((OUTSIDE_EVERY_AREA, month_moment(2026, 8, 1), {}))
    partnership.observations(specs)
    return partnership
