"""Retention: personal fields past their period are erased from records and every copy,
in batches, each batch one transaction with one erasure row naming its records."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fieldsync.sync.api import Conflict, QuarantinedMutation, Receipt, RecordVersion

from ... import permissions
from ..selectors import RECORD_MODELS, RETENTION_CLOCK, retention_cutoff, retention_days, retention_due
from .erasure import Erased, copies_erase, personal_data_erase
from .subjects import erasure_logged

log = logging.getLogger(__name__)


@dataclass
class RetentionRun:
    erased: dict[str, int] = field(default_factory=dict)  # record type -> records erased
    swept: dict[str, int] = field(default_factory=dict)  # record type -> records whose late copies were cleaned
    batches: int = 0


def retention_erase_due(*, now: datetime | None = None, batch: int | None = None) -> RetentionRun:
    """Erase personal fields of every record past its type's retention period (counted from
    observed_at for observations, created_at otherwise), then clean copies made lately of
    records already erased (a late push's conflict or receipt). Safe to run at any time
    and concurrently: each batch locks its records, and erased records no longer match."""
    now = now or timezone.now()
    batch = batch or settings.RETENTION_BATCH
    run = RetentionRun()
    for record_type, personal in sorted(permissions.PERSONAL_FIELDS.items()):
        cutoff = retention_cutoff(record_type, now=now) if personal else None
        if cutoff is None:
            continue
        fields = sorted(personal)
        purpose = f"retention: personal fields kept {retention_days(record_type)} days"
        while True:
            with transaction.atomic():
                ids = list(
                    retention_due(record_type, fields, cutoff).select_for_update(skip_locked=True)
                    .values_list("id", flat=True)[:batch]
                )
                if not ids:
                    break
                erased = personal_data_erase(record_type=record_type, record_ids=ids, user=None, fields=fields)
                erasure_logged(erased, user=None, purpose=purpose, via="retention",
                               extra={"cutoff": cutoff.isoformat()})
            run.erased[record_type] = run.erased.get(record_type, 0) + len(ids)
            run.batches += 1
        since = now - timedelta(days=settings.RETENTION_SWEEP_DAYS)
        swept = _late_copies_sweep(record_type, fields, cutoff, since=since, purpose=purpose, batch=batch)
        if swept:
            run.swept[record_type] = swept
            run.batches += 1
    if run.erased or run.swept:
        log.info("retention: erased %s, late copies cleaned %s", run.erased, run.swept)
    return run


def _late_copies_sweep(record_type: str, fields: list[str], cutoff: datetime, *, since: datetime, purpose: str,
                       batch: int) -> int:
    """Copies written since `since` of records past the cutoff: a handheld that was offline
    at the erasure may push its old values afterwards, into a conflict or receipt."""
    recent: set[str] = set()
    for model in (RecordVersion, Conflict, Receipt, QuarantinedMutation):
        recent.update(str(r) for r in model.objects.filter(record_type=record_type, created_at__gte=since)
                      .values_list("record_id", flat=True).distinct())
    candidates = [r for r in recent if _is_uuid(r)]
    if not candidates:
        return 0
    model, clock = RECORD_MODELS[record_type], RETENTION_CLOCK[record_type]
    old = sorted(str(i) for i in model.objects.filter(pk__in=candidates, **{f"{clock}__lt": cutoff})
                 .values_list("id", flat=True))
    total = 0
    for start in range(0, len(old), batch):
        with transaction.atomic():
            erased: Erased = copies_erase(record_type=record_type, record_ids=old[start:start + batch], fields=fields)
            if erased.copies_of:
                # The row names the records whose copies changed, not every one looked at.
                erased.record_ids = sorted(str(i) for i in erased.copies_of)
                erasure_logged(erased, user=None, purpose=purpose, via="retention.late_copies",
                               extra={"cutoff": cutoff.isoformat()})
                total += len(erased.record_ids)
    return total


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
