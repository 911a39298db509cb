"""Rate limits in Redis, failing open: a broker outage must not stop field staff syncing."""
from __future__ import annotations

import logging

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from fieldsync.login_guard import client_address

log = logging.getLogger(__name__)


class _FailOpen(SimpleRateThrottle):
    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # Redis unreachable: let the request through
            log.warning("throttle skipped: %s", exc)
            return True


class DeviceRateThrottle(_FailOpen):
    """Requests per device (429 with Retry-After beyond `SYNC_DEVICE_RATE`)."""

    scope = "device"

    def get_rate(self) -> str:
        return settings.SYNC_DEVICE_RATE

    def get_cache_key(self, request, view) -> str | None:
        device = getattr(request, "auth", None)
        return f"throttle:device:{device.pk}" if device is not None else None


class EnrolThrottle(_FailOpen):
    """Enrolment takes a password: limit guesses per client address."""

    scope = "enrol"

    def get_rate(self) -> str:
        return settings.SYNC_ENROL_RATE

    def get_cache_key(self, request, view) -> str:
        # The address the proxy wrote (rightmost X-Forwarded-For), as the sign-in guard
        # counts it; DRF's own get_ident would key on the whole header a client can pad.
        return f"throttle:enrol:{client_address(request)}"
