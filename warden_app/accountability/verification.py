"""The last verification of the access log's chain, kept for the DPO's pages.

`access_log_verify` reads every sealed row from seq 1 (some 6,000 rows a second on the
shared development machine: minutes on a big log), far too long for a page view. So it
runs in the worker (`access_log_verify_task`: Celery beat daily, or when the DPO asks), and
its result, with when it ran, how long it took and who asked, is kept in the cache without
expiry for the pages to show. The result holds
no personal data (seqs, row ids, hashes, the anchor's address and counts).

The cache is no place of record: if it is flushed the page says "never run" and the DPO
runs it again; the evidence itself is the log, its seals and the anchors.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

from django.core.cache import cache
from django.utils import timezone

from .selectors import access_log_verify

log = logging.getLogger(__name__)

RESULT_KEY = "accountability:access-log-verification:last"
RUNNING_KEY = "accountability:access-log-verification:running"
# A run that died without clearing its mark stops blocking the next after this long.
RUNNING_TIMEOUT_S = 3600


class VerificationUnavailable(Exception):
    """The result store (Redis) or the task queue cannot be reached."""


def verification_run(*, requested_by: str = "") -> dict[str, Any]:
    """Verify the chain now, in this process, and keep the result; answers it."""
    started = timezone.now()
    clock = time.monotonic()
    _mark_running(requested_by, started, replace=True)
    try:
        result = asdict(access_log_verify())
        result["error"] = ""
    except Exception as exc:  # a database or anchor failure is not a verdict on the chain
        log.exception("access log verification could not run")
        result = {"ok": None, "error": f"{exc.__class__.__name__}: {exc}"}
    result |= {
        "started_at": started.isoformat(), "finished_at": timezone.now().isoformat(),
        "seconds": round(time.monotonic() - clock, 3), "requested_by": requested_by,
    }
    try:
        cache.set(RESULT_KEY, result, timeout=None)
        cache.delete(RUNNING_KEY)
    except Exception:
        log.exception("access log verification result not kept (cache unreachable): %s", result)
    return result


def verification_last() -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the last result or None, the run under way or None)."""
    try:
        found = cache.get_many([RESULT_KEY, RUNNING_KEY])
    except Exception as exc:
        raise VerificationUnavailable("the result store (Redis) cannot be reached") from exc
    return found.get(RESULT_KEY), found.get(RUNNING_KEY)


def verification_request(*, requested_by: str) -> bool:
    """Queue a run for the worker; False when one is under way already."""
    from .tasks import access_log_verify_task

    try:
        if not _mark_running(requested_by, timezone.now(), replace=False):
            return False
    except Exception as exc:
        raise VerificationUnavailable("the result store (Redis) cannot be reached") from exc
    try:
        access_log_verify_task.apply_async(kwargs={"requested_by": requested_by}, retry=False)
    except Exception as exc:
        cache.delete(RUNNING_KEY)
        raise VerificationUnavailable("the task queue (Redis) cannot be reached: no worker will run it") from exc
    return True


def _mark_running(requested_by: str, since, *, replace: bool) -> bool:
    mark = {"since": since.isoformat(), "requested_by": requested_by}
    if replace:
        try:
            cache.set(RUNNING_KEY, mark, timeout=RUNNING_TIMEOUT_S)
        except Exception:
            log.warning("access log verification: cache unreachable, run not marked")
        return True
    return cache.add(RUNNING_KEY, mark, timeout=RUNNING_TIMEOUT_S)
