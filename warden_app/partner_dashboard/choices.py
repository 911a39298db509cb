"""The partner dashboard's fixed lists — boundary sets, closed periods, record types — and
the one way a query string becomes a choice among them.

Free filters defeat suppression by differencing (docs/disclosure.md), so the page offers
exactly what the aggregates API serves to partners and nothing else: a query string naming
any other parameter (a polygon, dates, an area), repeating one, or naming a value that is not
on the lists is refused, never quietly widened or narrowed. Values are compared with the lists
in Python; nothing a visitor types reaches a query.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.http import QueryDict
from django.utils import timezone

from fieldsync.errors import ApiError

from ..aggregates import disclosure
from ..aggregates.disclosure import Period
from ..aggregates.params import PARTNER_PARAMS, PartnerQuery, boundary_sets_for_partners, partner_query
from ..models import BoundarySet

# The record types of the aggregates API, in the words of the people who use the page.
RECORD_TYPES = (
    ("observation", "ASB observations"),
    ("street_audit", "Street audits"),
    ("audit_item", "Street audit issues"),
)
RECORD_TYPE_LABELS = dict(RECORD_TYPES)
# How far back the lists go. Older closed periods are still served by the API; a page of
# choices is for the recent past.
MONTHS_OFFERED = 12
QUARTERS_OFFERED = 4

MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
# Parameter names are shown back on the refusal page: a few, shortened.
SHOWN_NAMES, SHOWN_NAME_CHARS = 8, 40


class Refused(Exception):
    """The query string asked for something the page does not offer: problems in plain words."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def period_label(period: Period) -> str:
    """"October 2026", or "July to September 2026" for a quarter."""
    if period.month:
        return f"{MONTH_NAMES[period.month - 1]} {period.year}"
    first = 3 * period.quarter - 3
    return f"{MONTH_NAMES[first]} to {MONTH_NAMES[first + 2]} {period.year}"


def published_from(period: Period) -> date:
    """The first day partners may see `period`: once it has ended and the settling days have
    passed, so late syncs have landed (the aggregates API's own rule)."""
    return (period.end + timedelta(days=disclosure.settle_days())).date()


def _is_closed(period: Period, now: datetime) -> bool:
    return now >= period.end + timedelta(days=disclosure.settle_days())


def _month_before(period: Period) -> Period:
    year, month = (period.year, period.month - 1) if period.month > 1 else (period.year - 1, 12)
    return Period(year, (month - 1) // 3 + 1, month)


def _quarter_before(period: Period) -> Period:
    return Period(period.year, period.quarter - 1, None) if period.quarter > 1 else Period(period.year - 1, 4, None)


def _closed_run(current: Period, before, now: datetime, count: int) -> list[Period]:
    """`count` closed periods, newest first, walking back from the open one `current`."""
    period = current
    while not _is_closed(period, now):
        period = before(period)
    run = []
    for _ in range(count):
        run.append(period)
        period = before(period)
    return run


def closed_months(now: datetime) -> list[Period]:
    local = timezone.localtime(now, disclosure.local_zone())
    return _closed_run(Period(local.year, (local.month - 1) // 3 + 1, local.month), _month_before, now, MONTHS_OFFERED)


def closed_quarters(now: datetime) -> list[Period]:
    local = timezone.localtime(now, disclosure.local_zone())
    return _closed_run(Period(local.year, (local.month - 1) // 3 + 1, None), _quarter_before, now, QUARTERS_OFFERED)


def next_month(now: datetime) -> Period:
    """The month after the newest closed one: not shown yet (the page says from when)."""
    newest = closed_months(now)[0]
    year, month = (newest.year, newest.month + 1) if newest.month < 12 else (newest.year + 1, 1)
    return Period(year, (month - 1) // 3 + 1, month)


@dataclass(frozen=True)
class Option:
    value: str
    label: str


@dataclass(frozen=True)
class Choice:
    """What the page shows, and every list it could show instead."""

    query: PartnerQuery  # the aggregates API's own answer to the same three parameters
    period_label: str
    record_label: str
    sets: list[Option]
    months: list[Option]
    quarters: list[Option]
    record_types: list[Option]
    boundary_set: str
    period: str
    record_type: str


def _default_set(sets: list[BoundarySet]) -> BoundarySet:
    """The operational areas if partners may see them (everyone knows them), else the first."""
    return next((s for s in sets if s.operational), sets[0])


def choice_from(query: QueryDict, *, now: datetime) -> Choice:
    """The choice a query string names, defaults for what it leaves out (a blank value is left
    out); Refused for anything else. Raises LookupError when there is no boundary set at all."""
    unknown = sorted(set(query.keys()) - PARTNER_PARAMS)
    if unknown:
        names = ", ".join(name[:SHOWN_NAME_CHARS] or "(a parameter without a name)" for name in unknown[:SHOWN_NAMES])
        more = " and more" if len(unknown) > SHOWN_NAMES else ""
        raise Refused([
            f"This page cannot be narrowed or filtered: {names}{more} cannot be chosen here. "
            "Pick a boundary set, a period and a kind of record from the lists."
        ])
    repeated = sorted(name for name in PARTNER_PARAMS if len(query.getlist(name)) > 1)
    if repeated:
        raise Refused([f"Choose one {name.replace('_', ' ')}, not several." for name in repeated])

    sets = boundary_sets_for_partners()
    if not sets:
        raise LookupError("no boundary set is published to partners")
    months, quarters = closed_months(now), closed_quarters(now)
    offered_periods = {p.label: p for p in (*months, *quarters)}

    problems = []
    slug = (query.get("boundary_set") or "").strip() or _default_set(sets).slug
    if slug not in {s.slug for s in sets}:
        problems.append("That boundary set is not one of those published to partners.")
    period_text = (query.get("period") or "").strip() or months[0].label
    if period_text not in offered_periods:
        problems.append(_period_problem(period_text, now))
    record_type = (query.get("record_type") or "").strip() or RECORD_TYPES[0][0]
    if record_type not in RECORD_TYPE_LABELS:
        problems.append("That kind of record is not one of those on the list.")
    if problems:
        raise Refused(problems)

    try:
        # The API's own checks, on values already from its lists: if they ever disagree
        # (a setting changed between the two), the API's answer wins.
        asked = QueryDict(mutable=True)
        asked.update({"boundary_set": slug, "period": period_text, "record_type": record_type})
        partner = partner_query(asked)
    except ApiError as exc:
        raise Refused([str(exc.detail)]) from exc
    return Choice(
        query=partner,
        period_label=period_label(partner.period),
        record_label=RECORD_TYPE_LABELS[record_type],
        sets=[Option(s.slug, s.name) for s in sets],
        months=[Option(p.label, period_label(p)) for p in months],
        quarters=[Option(p.label, period_label(p)) for p in quarters],
        record_types=[Option(value, label) for value, label in RECORD_TYPES],
        boundary_set=slug,
        period=period_text,
        record_type=record_type,
    )


def _period_problem(text: str, now: datetime) -> str:
    try:
        period = disclosure.period_parse(text)
    except ValueError:
        return "That period is not one of the months or quarters on the list."
    if not _is_closed(period, now):
        return (
            f"{period_label(period)} is not closed yet: partners see a period from "
            f"{published_from(period):%-d %B %Y}, once late records have arrived."
        )
    return "That period is not one of the months or quarters on the list."
