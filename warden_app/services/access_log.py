"""Writing the s.62 access log, always inside the transaction of the act it records."""
from __future__ import annotations

from collections.abc import Sequence

from ..models import AccessLogEntry


def access_log_records(
    *,
    user,
    action: str,
    record_type: str,
    record_ids: Sequence,
    device_id=None,
    recipient: str = "",
    purpose: str = "",
    details: dict | None = None,
) -> AccessLogEntry:
    """One row naming every record the act touched (a push logs one row per action)."""
    return AccessLogEntry.objects.create(
        actor=user if getattr(user, "pk", None) else None,
        action=action,
        record_type=record_type,
        record_ids=list(record_ids),
        device_id=device_id,
        recipient=recipient,
        purpose=purpose,
        details=details or {},
    )
