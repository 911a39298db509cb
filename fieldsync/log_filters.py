"""Logging filters (settings.LOGGING). Kept free of Django imports: logging is configured
before the apps are loaded."""
from __future__ import annotations

import logging


class ClientErrorsWithoutTraceback(logging.Filter):
    """Django logs a refused request (PermissionDenied → 403, SuspiciousOperation → 400) with
    the exception's traceback. A refusal is the answer working as meant, not a fault: one line
    says it (method, path, status); tracebacks stay for the 5xx that need them."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if record.exc_info and isinstance(status, int) and status < 500:
            record.exc_info = None
            record.exc_text = None
        return True
