"""Query parameters of the aggregate endpoints, checked before anything is computed.

Partners may name a whole boundary set, a whole closed month or quarter and a record type,
and nothing else: any other parameter (bbox, dates, incident types, areas, bandwidth…) is
refused with 400 `filter_not_allowed`, because free filters defeat suppression by
differencing. People inside the partnership may filter freely.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from fieldsync import parsing
from fieldsync.errors import ApiError, field_error

from ..choices import IncidentType
from ..models import BoundarySet
from . import disclosure
from .access import Audience
from .disclosure import Period
from .selectors import RECORD_TYPES, AreaRow, RecordFilter, areas_of, region_area_m2

PARTNER_PARAMS = frozenset({"boundary_set", "period", "record_type"})
INTERNAL_PARAMS = frozenset({"boundary_set", "areas", "period", "start", "end", "record_type", "incident_type"})
HOTSPOT_PARAMS = frozenset({"bandwidth", "cell_size"})
# Parameters that may be given more than once (internal callers only).
REPEATABLE = frozenset({"incident_type", "areas"})

BANDWIDTH_RANGE_M = (50.0, 5000.0)
CELL_RANGE_M = (5.0, 1000.0)
# Work per record is (2h/c)² cells; this keeps one record's share of a request bounded.
MAX_BANDWIDTH_CELLS = 100
MAX_GRID_CELLS = 250_000


@dataclass(frozen=True)
class PartnerQuery:
    boundary_set: BoundarySet
    family_set_ids: list[int]
    period: Period
    record_type: str


@dataclass(frozen=True)
class InternalQuery:
    boundary_set: BoundarySet | None  # None: the operational areas
    areas: list[AreaRow]
    records: RecordFilter
    period: Period | None
    bandwidth_m: float | None = None
    cell_m: float | None = None


class _Params:
    """The query string, with the problems found so far."""

    def __init__(self, query: Any, allowed: frozenset[str]):
        self.query = query
        self.fields: dict[str, list[dict[str, str]]] = {}
        self.not_allowed = sorted(set(query.keys()) - allowed)

    def one(self, name: str) -> str | None:
        values = self.query.getlist(name)
        if not values:
            return None
        if len(values) > 1 and name not in REPEATABLE:
            self.fields[name] = [field_error("repeated", f"Give {name} once.")]
            return None
        return values[0].strip()

    def many(self, name: str) -> list[str]:
        return [part.strip() for value in self.query.getlist(name) for part in value.split(",") if part.strip()]

    def fail(self, name: str, code: str, message: str) -> None:
        self.fields.setdefault(name, []).append(field_error(code, message))

    def raise_if_problems(self) -> None:
        if self.fields:
            raise ApiError("invalid", "Some parameters are not valid.", fields=self.fields)

    def record_type(self) -> str:
        value = self.one("record_type") or "observation"
        if value not in RECORD_TYPES:
            self.fail("record_type", "not_in_choices", f"record_type is one of {', '.join(RECORD_TYPES)}.")
        return value

    def period(self, *, required: bool) -> Period | None:
        value = self.one("period")
        if value is None:
            if required:
                self.fail("period", "required", "Name a calendar month (2026-10) or quarter (2026-Q3).")
            return None
        try:
            return disclosure.period_parse(value)
        except ValueError as exc:
            self.fail("period", "invalid_period", str(exc))
            return None


def partner_query(query: Any) -> PartnerQuery:
    params = _Params(query, PARTNER_PARAMS)
    if params.not_allowed:
        raise ApiError(
            "filter_not_allowed",
            "Partner outputs cover whole boundary sets and whole months or quarters only: "
            "name boundary_set, period and optionally record_type, and nothing else.",
            fields={
                name: [field_error("not_allowed", f"{name} is not available to partner viewers.")]
                for name in params.not_allowed
            },
        )
    record_type = params.record_type()
    period = params.period(required=True)
    slug = params.one("boundary_set")
    family = boundary_sets_for_partners()
    boundary_set = None
    if slug is None:
        if "boundary_set" not in params.fields:
            params.fail("boundary_set", "required", "Name a boundary set by its slug.")
    else:
        boundary_set = next((s for s in family if s.slug == slug), None)
        if boundary_set is None:
            params.fail("boundary_set", "unknown_boundary_set", f"No boundary set {slug!r} is published to partners.")
    params.raise_if_problems()
    assert period is not None and boundary_set is not None
    available = period.end + timedelta(days=disclosure.settle_days())
    if timezone.now() < available:
        raise ApiError(
            "period_not_closed",
            f"{period} is published to partners from {available.date().isoformat()}: only whole periods, "
            "once late records have arrived.",
            fields={"period": [field_error("period_not_closed", f"{period} is not closed yet.")]},
        )
    return PartnerQuery(
        boundary_set=boundary_set, family_set_ids=[s.pk for s in family], period=period, record_type=record_type
    )


def boundary_sets_for_partners() -> list[BoundarySet]:
    """Every boundary set, or those named by DISCLOSURE_PARTNER_BOUNDARY_SETS."""
    slugs = disclosure.partner_boundary_set_slugs()
    queryset = BoundarySet.objects.order_by("name")
    return list(queryset if slugs is None else queryset.filter(slug__in=slugs))


def _instant(value: str, name: str, params: _Params) -> datetime | None:
    """A date (its start) or date-time, naive ones in the partnership's zone (TIME_ZONE, which
    disclosure.local_zone() names too), in UTC: fieldsync.parsing.instant."""
    try:
        return parsing.instant(value)
    except parsing.BadInstant as exc:
        params.fail(name, exc.code, f"{name}: {exc.message}.")
    return None


def _metres(params: _Params, name: str, default: float, bounds: tuple[float, float]) -> float:
    value = params.one(name)
    if value is None:
        return default
    try:
        metres = parsing.number(name, value, minimum=bounds[0], maximum=bounds[1])
    except ApiError:
        params.fail(name, "out_of_range", f"{name} is a number of metres from {bounds[0]:g} to {bounds[1]:g}.")
        return default
    return default if metres is None else metres


def internal_query(query: Any, *, audience: Audience, hotspots: bool) -> InternalQuery:
    allowed = INTERNAL_PARAMS | (HOTSPOT_PARAMS if hotspots else frozenset())
    params = _Params(query, allowed)
    for name in params.not_allowed:
        params.fail(name, "unknown_parameter", f"{name} is not a parameter of this endpoint.")
    record_type = params.record_type()
    period = params.period(required=False)
    start_text, end_text = params.one("start"), params.one("end")
    start = _instant(start_text, "start", params) if start_text else None
    end = _instant(end_text, "end", params) if end_text else None
    if period is not None and (start_text or end_text):
        params.fail("period", "conflict", "Give a period or start/end, not both.")
    if period is not None:
        start, end = period.start, period.end
    if start and end and start >= end:
        params.fail("end", "before_start", "end must be after start (end is exclusive).")

    incident_types = params.many("incident_type")
    unknown = sorted(set(incident_types) - set(IncidentType.values))
    if unknown:
        params.fail("incident_type", "not_in_choices", f"Unknown incident types: {', '.join(unknown)}.")
    if incident_types and record_type != "observation":
        params.fail("incident_type", "not_applicable", "Incident types filter observations only.")

    slug = params.one("boundary_set")
    boundary_set = None
    if slug is not None:
        boundary_set = BoundarySet.objects.filter(slug=slug).first()
        if boundary_set is None:
            params.fail("boundary_set", "unknown_boundary_set", f"No boundary set {slug!r}.")
    params.raise_if_problems()

    set_ids = (
        [boundary_set.pk] if boundary_set
        else list(BoundarySet.objects.filter(operational=True).values_list("pk", flat=True))
    )
    scope = audience.scope_area_ids
    codes = params.many("areas") or None
    areas = areas_of(boundary_set_ids=set_ids, codes=codes, scope_area_ids=scope)
    if codes:
        missing = sorted(set(codes) - {row.code for row in areas})
        if missing:
            params.fail(
                "areas", "unknown_area", f"Not areas of this boundary set (or not yours): {', '.join(missing)}."
            )

    bandwidth = cell = None
    if hotspots:
        bandwidth = _metres(params, "bandwidth", disclosure.hotspot_bandwidth_m(), BANDWIDTH_RANGE_M)
        cell = _metres(params, "cell_size", disclosure.hotspot_cell_m(), CELL_RANGE_M)
        if bandwidth / cell > MAX_BANDWIDTH_CELLS:
            params.fail("cell_size", "too_fine", f"The bandwidth may span at most {MAX_BANDWIDTH_CELLS} cells.")
        elif region_area_m2(area_ids=[row.id for row in areas]) / (cell * cell) > MAX_GRID_CELLS:
            params.fail("cell_size", "too_fine", f"The grid would have more than {MAX_GRID_CELLS} cells.")
    params.raise_if_problems()
    return InternalQuery(
        boundary_set=boundary_set,
        areas=areas,
        records=RecordFilter(
            record_type=record_type, start=start, end=end, incident_types=tuple(sorted(set(incident_types))),
            scope_area_ids=scope,
        ),
        period=period,
        bandwidth_m=bandwidth,
        cell_m=cell,
    )
