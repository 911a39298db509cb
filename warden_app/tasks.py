"""Celery tasks of the domain."""
from __future__ import annotations

import logging

from celery import shared_task
from django.db import transaction

log = logging.getLogger(__name__)


@shared_task(acks_late=True)
def records_replace_task() -> int:
    """Place records again after operational boundaries changed."""
    from .services.placement import records_replace

    return records_replace()


def records_replace_soon() -> None:
    """After this transaction commits, re-place records in the background; if the broker
    is down, do it in this process instead (boundary edits are rare and small)."""

    def queue() -> None:
        try:
            records_replace_task.apply_async(retry=False)
        except Exception as exc:  # broker unreachable
            log.warning("re-placing records inline: %s", exc)
            records_replace_task()

    transaction.on_commit(queue)


@shared_task(acks_late=True, ignore_result=True)
def export_build_task(export_id: str) -> None:
    """Build an analyst's export file (services.exports.export_build)."""
    from .services.exports import export_build

    export_build(export_id=export_id)


@shared_task(acks_late=True, ignore_result=True)
def exports_expire_task() -> int:
    """Delete export files past their retention (they hold personal data)."""
    from .services.exports import exports_expire

    return exports_expire()
