"""Rate limits in Redis, failing open: a broker outage must not stop field staff syncing."""
from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.core.cache import cache as default_cache
from rest_framework.throttling import SimpleRateThrottle

from fieldsync.login_guard import client_address

log = logging.getLogger(__name__)


# A sliding window of request times per key, as a sorted set: drop what left the window,
# count, and record this request only if there is room, in one atomic step. DRF's own
# throttle reads and rewrites a pickled list in two round trips, so two requests at once
# could both pass the last free place. Answers {1, 0} (allowed) or {0, oldest time}.
# Its keys are named `rate:…`, not DRF's `throttle:…`, whose values are pickled lists.
_WINDOW_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return {0, redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2] or ARGV[1]}
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000))
return {1, 0}
"""


_script = None


def _run_window(client, key: str, now: float, duration: int, limit: int) -> tuple[int, bytes | int]:
    global _script
    if _script is None:
        _script = client.register_script(_WINDOW_SCRIPT)  # sent once, then called by its digest
    return _script(keys=[key], args=[repr(now), duration, limit, uuid.uuid4().hex], client=client)


class _RedisWindow(SimpleRateThrottle):
    """At most `rate` requests per key in any window of its length, counted in Redis;
    with Redis unreachable every request passes (fail open)."""

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        now = self.timer()
        try:
            full_key = default_cache.make_and_validate_key(key)
            client = default_cache._cache.get_client(full_key, write=True)
            allowed, oldest = _run_window(client, full_key, now, self.duration, self.num_requests)
        except Exception as exc:  # Redis unreachable: let the request through
            log.warning("throttle skipped: %s", exc)
            return True
        self._wait = 0.0 if allowed else max(0.0, float(oldest) + self.duration - now)
        return bool(allowed)

    def wait(self) -> float:
        return self._wait


class DeviceRateThrottle(_RedisWindow):
    """Requests per device (429 with Retry-After beyond `SYNC_DEVICE_RATE`)."""

    scope = "device"

    def get_rate(self) -> str:
        return settings.SYNC_DEVICE_RATE

    def get_cache_key(self, request, view) -> str | None:
        device = getattr(request, "auth", None)
        return f"rate:device:{device.pk}" if device is not None else None


class EnrolThrottle(_RedisWindow):
    """Enrolment takes a password: limit guesses per client address."""

    scope = "enrol"

    def get_rate(self) -> str:
        return settings.SYNC_ENROL_RATE

    def get_cache_key(self, request, view) -> str:
        # The address the proxy wrote (rightmost X-Forwarded-For), as the sign-in guard
        # counts it; DRF's own get_ident would key on the whole header a client can pad.
        return f"rate:enrol:{client_address(request)}"
