"""The partner viewer's dashboard: fixed choices in, the aggregates API's partner outputs out.

Thin: the choice (choices.py, which refuses anything not on its lists with a 400 page), the
figures (selectors.py, over the aggregates selectors), a page. Everyone who may open the door
— partner viewers, and the analysts, supervisors and admins the aggregates API also answers —
sees the partner outputs, so people inside the partnership see exactly what leaves it. Nothing
here is personal data: like the aggregates API, no consultation is logged.
"""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.http import urlencode

from warden_app.aggregates import disclosure
from warden_app.aggregates.access import aggregate_audience
from warden_app.basemaps.config import map_config
from warden_app.front_door.guards import door_required

from . import choices
from .choropleth import CLASS_LABELS
from .selectors import dashboard_read


@door_required("partner")
def home(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    try:
        choice = choices.choice_from(request.GET, now=now)
    except choices.Refused as refused:
        return render(request, "partner_dashboard/refused.html", {
            "door_key": "partner", "problems": refused.problems,
        }, status=400)
    except LookupError:
        return render(request, "partner_dashboard/home.html", {"door_key": "partner", "no_sets": True})
    board = dashboard_read(choice.query)
    audience = aggregate_audience(request.user)
    upcoming = choices.next_month(now)
    return render(request, "partner_dashboard/home.html", {
        "door_key": "partner",
        "choice": choice,
        "board": board,
        "map_config": map_config(),
        "inside_partnership": audience is not None and not audience.partner,
        "hotspot_classes": [
            {"key": key, "label": CLASS_LABELS[key]} for key in disclosure.HOTSPOT_CLASSES
        ],
        "rules": {
            "threshold": disclosure.min_count(),
            "round_to": disclosure.round_to(),
            "settle_days": disclosure.settle_days(),
            "radius_m": f"{disclosure.location_radius_m():g}",
            "bandwidth_m": f"{disclosure.hotspot_bandwidth_m():g}",
            "hotspot_min": disclosure.hotspot_min_records(),
            "cell_m": f"{disclosure.hotspot_cell_m():g}",
            "spacing_m": f"{disclosure.map_point_spacing_m():.0f}",
            "rounding": _rounding_example(),
        },
        "upcoming": {"label": choices.period_label(upcoming), "from": choices.published_from(upcoming)},
        "api_query": urlencode({
            "boundary_set": choice.boundary_set, "period": choice.period, "record_type": choice.record_type,
        }),
    })


def _rounding_example() -> dict | None:
    """A shown figure and the true counts it stands for, for the page's words on rounding
    (with the defaults: 15 means 13 to 17). None when figures are not rounded."""
    base, threshold = disclosure.round_to(), disclosure.min_count()
    if base == 1:
        return None
    shown = (-(-threshold // base) + 1) * base  # the second multiple of the base at or above the threshold
    low = min(n for n in range(shown - base, shown + 1)
              if disclosure.published_count(n, minimum=threshold, base=base) == shown)
    high = max(n for n in range(shown, shown + base + 1)
               if disclosure.published_count(n, minimum=threshold, base=base) == shown)
    return {"base": base, "shown": shown, "low": low, "high": high}
