"""Escalation to partner systems: the request (one transaction: escalation row and its
disclosure row; the delivery task is queued on commit) and each delivery attempt."""
from __future__ import annotations

import http.client
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from fieldsync.errors import ApiError, field_error

from ...models import AccessAction, Escalation, PartnerEndpoint
from ...services.access_log import access_log_records
from ..permissions import can_escalate, organisation_may_receive_personal
from ..selectors import escalation_payload, escalation_record
from .subjects import purpose_checked

log = logging.getLogger(__name__)

ESCALATABLE = ("observation", "audit_item")
# Answers worth trying again besides 5xx; any other 3xx/4xx refuses the request itself.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
USER_AGENT = "fieldsync-escalation/1"


def record_escalate(*, user, record_type: str, record_id, endpoint: PartnerEndpoint | int, purpose: str) -> Escalation:
    """Pass a record to a partner endpoint. Personal fields go with it only when a purpose
    is stated and the sharing protocol opens them to the endpoint's organisation; what is
    disclosed, and to whom, is logged with the escalation row in one transaction. The
    delivery task is queued once that commits."""
    if record_type not in ESCALATABLE:
        raise ApiError("invalid", "Observations and audit items are escalated (an audit: its items).",
                       fields={"record_type": [field_error("not_in_choices", "observation or audit_item")]})
    purpose = purpose_checked(purpose)
    with transaction.atomic():
        if not isinstance(endpoint, PartnerEndpoint):
            endpoint = PartnerEndpoint.objects.select_related("organisation").filter(pk=endpoint).first()
        if endpoint is None or not endpoint.active:
            raise ApiError("invalid", "No such active partner endpoint.",
                           fields={"endpoint": [field_error("invalid", "no such active partner endpoint")]})
        record = escalation_record(record_type, record_id)
        if record is None or record.deleted_at is not None or not can_escalate(user, record):
            raise ApiError("not_found", "No such record.", status_code=404)
        if getattr(record, "processing_restricted", False):
            raise ApiError("restricted", "Processing of this record is restricted.", status_code=409)
        personal = (
            sorted(organisation_may_receive_personal(endpoint.organisation, record, record_type) - {"photos"})
            if purpose else []
        )
        escalation = Escalation.objects.create(
            record_type=record_type, record_id=record.pk, endpoint=endpoint, requested_by=user, purpose=purpose,
            personal_fields=personal,
        )
        entry = access_log_records(
            user=user, action=AccessAction.DISCLOSURE, record_type=record_type, record_ids=[record.pk],
            recipient=f"{endpoint.organisation.name} ({endpoint.name})"[:200], purpose=purpose,
            details={"via": "escalation", "escalation": str(escalation.pk), "endpoint": endpoint.pk,
                     "kind": endpoint.kind, "personal_fields": personal},
        )
        escalation.access_log_entry = entry
        escalation.save(update_fields=["access_log_entry"])
        escalation_queue_soon(escalation.pk)
    return escalation


def escalation_queue_soon(escalation_id) -> None:
    """After commit, queue delivery; with the broker down it stays pending for
    `escalations_catch_up` to queue."""
    from ..tasks import escalation_deliver_task

    def queue() -> None:
        try:
            escalation_deliver_task.apply_async(args=[str(escalation_id)], retry=False)
        except Exception as exc:  # broker unreachable
            log.warning("escalation %s not queued now (%s); the catch-up job will", escalation_id, exc)

    transaction.on_commit(queue)


def escalation_backoff(attempts: int) -> int:
    """Seconds before attempt `attempts + 1`: base, twice that, four times… capped."""
    return min(settings.ESCALATION_BACKOFF_BASE_S * 2 ** max(attempts - 1, 0), settings.ESCALATION_BACKOFF_MAX_S)


@dataclass(frozen=True)
class Attempt:
    state: str
    retry_in: int | None = None  # seconds, when another attempt is due


def escalation_attempt(*, escalation_id) -> Attempt:
    """One delivery attempt. The row is locked while it runs, so two workers never send the
    same escalation at once (and partners get an Idempotency-Key for a retry after a lost
    answer). 2xx: delivered; 408/429/5xx or no answer: try again after a backoff, until
    ESCALATION_MAX_ATTEMPTS; any other answer: failed at once."""
    with transaction.atomic():
        escalation = (
            Escalation.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint", "endpoint__organisation", "requested_by__organisation")
            .filter(pk=escalation_id).first()
        )
        if escalation is None:
            return Attempt(state="busy")  # gone, or another worker holds it
        if escalation.state != Escalation.State.PENDING:
            return Attempt(state=escalation.state)
        now = timezone.now()
        escalation.attempts += 1
        escalation.last_attempt_at = now
        sent = _deliver(escalation)
        escalation.last_status = sent.status
        if sent.delivered:
            escalation.state, escalation.delivered_at = Escalation.State.DELIVERED, timezone.now()
            escalation.last_error, escalation.next_attempt_at = "", None
            escalation.partner_reference = sent.reference[:200]
            retry_in = None
        else:
            escalation.last_error = sent.error[:2000]
            if sent.permanent or escalation.attempts >= settings.ESCALATION_MAX_ATTEMPTS:
                escalation.state, escalation.next_attempt_at, retry_in = Escalation.State.FAILED, None, None
            else:
                retry_in = escalation_backoff(escalation.attempts)
                escalation.next_attempt_at = now + timedelta(seconds=retry_in)
        escalation.save(update_fields=[
            "attempts", "last_attempt_at", "last_status", "state", "delivered_at", "last_error",
            "next_attempt_at", "partner_reference",
        ])
    return Attempt(state=escalation.state, retry_in=retry_in)


@dataclass(frozen=True)
class Sent:
    status: int | None = None  # the partner's HTTP status; None: no answer, or not sent
    error: str = ""
    reference: str = ""
    permanent: bool = False  # trying again cannot help

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _deliver(escalation: Escalation) -> Sent:
    """One POST of the escalation's form, built from the record as it is now."""
    endpoint = escalation.endpoint
    if not endpoint.active:
        return Sent(error="not sent: the endpoint was deactivated", permanent=True)
    scheme = urlsplit(endpoint.url).scheme
    if scheme != "https" and not (scheme == "http" and settings.ESCALATION_ALLOW_HTTP):
        return Sent(error="not sent: personal data leaves only over https (ESCALATION_ALLOW_HTTP is off)",
                    permanent=True)
    record = escalation_record(escalation.record_type, escalation.record_id)
    if record is None or record.deleted_at is not None:
        return Sent(error="not sent: the record was deleted", permanent=True)
    if getattr(record, "processing_restricted", False):
        return Sent(error="not sent: processing of the record is restricted", permanent=True)
    body = orjson.dumps(escalation_payload(escalation, record))
    headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT,
               "Idempotency-Key": str(escalation.pk)}
    secret = _secret(endpoint)
    if secret and endpoint.auth_header_name:
        headers[endpoint.auth_header_name] = secret
    # The scheme is checked above: only http(s) is ever opened.
    request = urllib.request.Request(endpoint.url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with _OPENER.open(request, timeout=settings.ESCALATION_TIMEOUT_S) as response:
            status, answer = response.status, response.read(65536)
    except urllib.error.HTTPError as exc:
        text = exc.read(500).decode("utf-8", "replace")
        permanent = 300 <= exc.code < 500 and exc.code not in RETRYABLE_STATUS
        return Sent(status=exc.code, error=f"HTTP {exc.code}: {text}", permanent=permanent)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        return Sent(error=f"no answer: {exc}")
    if not 200 <= status < 300:
        return Sent(status=status, error=f"HTTP {status}", permanent=300 <= status < 500)
    return Sent(status=status, reference=_reference(answer))


def _secret(endpoint: PartnerEndpoint) -> str:
    value = endpoint.auth_header_secret
    if value.startswith("env:"):
        return os.environ.get(value[4:], "")
    return value


def _reference(raw: bytes) -> str:
    """A partner may answer {"reference": "…"}: its own incident or case number."""
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ""
    reference = answer.get("reference") if isinstance(answer, dict) else None
    return str(reference) if reference is not None else ""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a new destination: personal data goes only to the
    configured URL (urllib would otherwise re-send it, as a GET, wherever it is told)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


# No proxies from the environment either: the endpoint is reached directly.
_OPENER = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))


def escalations_due(*, now=None, grace_s: int = 300) -> list:
    """Pending escalations no task is waiting to send: never queued (broker down at the
    request) or overdue by more than `grace_s` (a task lost with its worker)."""
    now = now or timezone.now()
    late = now - timedelta(seconds=grace_s)
    due = Q(next_attempt_at__isnull=True, created_at__lt=late) | Q(next_attempt_at__lt=late)
    return list(Escalation.objects.filter(due, state=Escalation.State.PENDING).values_list("pk", flat=True)[:500])
