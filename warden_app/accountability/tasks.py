"""Celery tasks of the accountability part (imported by the worker through CELERY_IMPORTS;
scheduled by CELERY_BEAT_SCHEDULE in fieldsync/settings.py)."""
from __future__ import annotations

import logging

from celery import shared_task
from django.db import transaction

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def access_log_seal_task() -> int:
    """Every minute: put newly committed log rows on the hash chain."""
    from .services.access_log import access_log_seal

    return access_log_seal().rows


@shared_task(ignore_result=True)
def access_log_verify_task(requested_by: str = "") -> bool | None:
    """Daily, or when the DPO asks: recompute the whole chain, and keep the result for the
    DPO's pages (accountability/verification.py)."""
    from .verification import verification_run

    return verification_run(requested_by=requested_by)["ok"]


@shared_task(ignore_result=True, acks_late=True)
def retention_erase_due() -> dict:
    """Daily: erase personal fields past their retention period, everywhere."""
    from .services.retention import retention_erase_due as run

    result = run()
    return {"erased": result.erased, "swept": result.swept}


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=None)
def escalation_deliver_task(self, escalation_id: str) -> str:
    """One delivery attempt; the escalation row counts attempts and says when to stop, and
    Celery waits the backoff between them (`countdown`)."""
    from .services.escalation import escalation_attempt

    attempt = escalation_attempt(escalation_id=escalation_id)
    if attempt.retry_in is not None:
        raise self.retry(countdown=attempt.retry_in, max_retries=None)
    return attempt.state


@shared_task(ignore_result=True)
def escalations_catch_up() -> int:
    """Queue pending escalations no task is waiting for (broker down at the request, or a
    worker lost mid-way)."""
    from .services.escalation import escalations_due

    due = escalations_due()
    for escalation_id in due:
        escalation_deliver_task.apply_async(args=[str(escalation_id)])
    return len(due)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=60)
def export_files_erase_task(self, export_ids: list[str], record_type: str, record_ids: list[str]) -> int:
    """Export files that were being built when their records were erased: delete each once
    its build ends (and log the erasure); ask again later while any is still building."""
    from ..models import Export
    from .services.erasure import EXPORT_RECHECK_S, Erased, storage_delete
    from .services.subjects import erasure_logged

    with transaction.atomic():
        exports = list(Export.objects.select_for_update().filter(pk__in=export_ids))
        ready = [e for e in exports if e.status == Export.Status.READY]
        building = [str(e.pk) for e in exports if e.status in (Export.Status.QUEUED, Export.Status.RUNNING)]
        if ready:
            files = [e.file_name for e in ready if e.file_name]
            Export.objects.filter(pk__in=[e.pk for e in ready]).update(status=Export.Status.EXPIRED)
            erased = Erased(record_type=record_type, record_ids=record_ids, fields=[], exports=len(ready))
            erasure_logged(erased, user=None, purpose="erasure: export files built meanwhile",
                           via="erasure.exports")
            transaction.on_commit(lambda: storage_delete(files))
    if building:
        raise self.retry(args=[building, record_type, record_ids], countdown=EXPORT_RECHECK_S)
    return len(ready)


def export_files_erase_soon(*, export_ids: list[str], record_type: str, record_ids: list[str]) -> None:
    def queue() -> None:
        try:
            export_files_erase_task.apply_async(args=[export_ids, record_type, record_ids],
                                                countdown=30, retry=False)
        except Exception:  # broker unreachable: an operator must see this one
            log.exception("export files %s of erased records not queued for deletion", export_ids)

    transaction.on_commit(queue)
