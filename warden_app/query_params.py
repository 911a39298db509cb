"""Query and body parameters of the JSON APIs, read into Python values or refused with the
protocol's error shape (400 `invalid`, naming the parameter), so a typo never reaches a query."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from fieldsync.sync.errors import SyncError


def limit_param(raw: Any, default: int, maximum: int) -> int:
    if raw in (None, ""):
        return default
    if not str(raw).isdigit() or not 1 <= int(raw) <= maximum:
        raise SyncError("invalid", f"limit: 1 to {maximum}", fields={"limit": [f"1 to {maximum}"]})
    return int(raw)


def uuid_param(name: str, raw: Any) -> uuid.UUID | None:
    if raw in (None, ""):
        return None
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise SyncError("invalid", f"{name} is not a UUID", fields={name: ["not a UUID"]}) from None


def whole_number_param(name: str, raw: Any) -> int | None:
    if raw in (None, ""):
        return None
    text = str(raw).strip()
    if not text.isdigit():
        raise SyncError("invalid", f"{name} must be a whole number", fields={name: ["a whole number"]})
    return int(text)


def when_param(name: str, raw: Any, *, end: bool = False) -> datetime | None:
    """An ISO date-time, or a date (its start; with `end`, the next day's start)."""
    if raw in (None, ""):
        return None
    text = str(raw).strip()
    try:
        day = parse_date(text)  # a plain date first: parse_datetime would take it as midnight
        value = None if day else parse_datetime(text)
    except ValueError:
        day = value = None
    if day is None and value is None:
        raise SyncError("invalid", f"{name}: an ISO 8601 date or date-time", fields={name: ["ISO 8601"]})
    try:
        if day is not None:  # the day after 9999-12-31 overflows
            value = datetime.combine(day, time.min) + (timedelta(days=1) if end else timedelta(0))
        if timezone.is_naive(value):
            value = timezone.make_aware(value)
        # In UTC: PostgreSQL refuses offsets beyond ±15:59 that Python accepts, and year 1
        # east of Greenwich (or 9999 west of it) has no UTC instant at all.
        return value.astimezone(UTC)
    except OverflowError:
        raise SyncError("invalid", f"{name}: outside the years 1 to 9999 in UTC",
                        fields={name: ["out of range"]}) from None
