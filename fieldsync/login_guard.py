"""Brute-force guard for every password check: the review desk and admin sign-in pages, device
enrolment and HTTP Basic on the API (QGIS, GDAL) all end in `django.contrib.auth.authenticate`,
so the guard sits in the authentication backend and covers them all at once (docs/security.md).

Nobody may lock another person out by guessing wrong on purpose, so there is no lockout per
username. Failures are counted in Redis, each count in a fixed window from its first failure:

- per (username, address): after LOGIN_FAILURE_LIMIT failures that pair is refused until its
  window ends. Only the guesser's own address is stopped; the owner elsewhere is not.
- per address: after LOGIN_FAILURE_ADDRESS_LIMIT failures (any usernames) the address is
  refused, so one address cannot spray usernames.
- per username, counting failures from addresses that are not the account's usual ones: past
  LOGIN_FAILURE_LIMIT, a check from an unusual address must take a one-at-a-time gate that
  stays shut for a growing delay (1, 2, 4 … seconds, at most LOGIN_SLOWDOWN_MAX_SECONDS). That
  slows a guesser spread over many addresses to a few guesses a minute. It never blocks the
  owner from an address they signed in from in the last LOGIN_USUAL_ADDRESS_DAYS: those
  addresses skip the gate (and their failures, typos of the owner, do not feed the count).

A refused check is decided before the password is looked at, so it tells nothing, and it is
not counted, so a refusal does not extend itself. A success clears its pair's count and
remembers the address as usual; it does not clear the username's count (else the owner
signing in would hand a guesser fresh free guesses).

If Redis cannot be reached the guard lets checks through and logs an error: a Redis outage
must not lock every administrator out of the pages needed to deal with it, and the password
hasher still makes each guess slow. The sync API's throttles fail open for the same reason.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.backends import ModelBackend
from django.core.cache import caches
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from rest_framework.exceptions import Throttled

from fieldsync import parsing

log = logging.getLogger(__name__)

PREFIX = "login_guard"


class LoginLocked(Throttled):
    """Raised by the backend while an attempt is refused (locked out or slowed down).

    A DRF exception on purpose: enrolment and Basic authentication run inside DRF views, whose
    exception handler turns it into 429 with Retry-After. The sign-in forms below catch it."""

    default_detail = "Too many failed sign-in attempts. Try again later."
    default_code = "login_locked"


def client_address(request) -> str:
    """The client's address as the proxy saw it.

    deploy/nginx sets X-Forwarded-For to the peer address (overwriting what the client sent),
    and ingress-nginx appends the peer address, so the rightmost entry is the one a proxy we
    run wrote; without X-Forwarded-For the peer address is the client. An app port reachable
    without the proxy lets a client choose its address key, never its username key."""
    meta = getattr(request, "META", None) or {}
    forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
    if forwarded:
        last = forwarded.split(",")[-1].strip()
        if last:
            return last[:64]
    return (meta.get("REMOTE_ADDR") or "unknown")[:64]


def _digest(username: str) -> str:
    # Hashed: usernames are typed by anyone, and a key must be short and plain ASCII.
    return hashlib.sha256(username.strip().casefold().encode("utf-8", "replace")).hexdigest()[:32]


def _cache():
    return caches[settings.LOGIN_GUARD_CACHE]


@dataclass(frozen=True)
class _Keys:
    user: str  # failures from unusual addresses, any address
    gate: str  # held while the username's slow-down delay runs
    pair: str | None = None  # failures of this username from this address
    address: str | None = None  # failures from this address, any username
    usual: str | None = None  # present while this address is usual for this username


def _keys(request, username: str) -> _Keys:
    """The attempt's keys; none tied to an address without a request (e.g. a management
    command authenticating on someone's behalf)."""
    digest = _digest(username)
    user, gate = f"{PREFIX}:user:{digest}", f"{PREFIX}:gate:{digest}"
    if request is None:
        return _Keys(user, gate)
    address = client_address(request)
    return _Keys(user, gate, pair=f"{PREFIX}:pair:{digest}:{address}", address=f"{PREFIX}:addr:{address}",
                 usual=f"{PREFIX}:usual:{digest}:{address}")


@dataclass(frozen=True)
class Attempt:
    """What login_check found, for login_failed / login_succeeded to act on."""

    keys: _Keys
    pair_failures: int = 0
    usual: bool = False
    counted: bool = True  # False when Redis was down


def slowdown(failures: int) -> int:
    """Seconds the gate stays shut after `failures` failures from unusual addresses."""
    over = failures - settings.LOGIN_FAILURE_LIMIT
    if over < 0:
        return 0
    return min(settings.LOGIN_SLOWDOWN_MAX_SECONDS, 2 ** min(over, 16))


def _refuse(request, username: str, why: str, wait: int) -> LoginLocked:
    log.warning("sign-in refused (%s): username=%r address=%s path=%s", why, username[:64],
                client_address(request) if request is not None else "-", getattr(request, "path", "-"))
    return LoginLocked(wait=max(1, wait))


def login_check(request, username: str) -> Attempt:
    """Raise LoginLocked if this attempt must not be checked now; otherwise say what was found."""
    keys = _keys(request, username)
    wanted = [k for k in (keys.user, keys.pair, keys.address, keys.usual) if k]
    cache = _cache()
    try:
        found = cache.get_many(wanted)
    except Exception as exc:  # Redis down: fail open (module docstring)
        log.error("login guard unavailable, sign-in not rate limited: %s", exc)
        return Attempt(keys, counted=False)
    pair = int(found.get(keys.pair) or 0) if keys.pair else 0
    usual = bool(keys.usual and found.get(keys.usual))
    window = settings.LOGIN_FAILURE_WINDOW
    if keys.pair and pair >= settings.LOGIN_FAILURE_LIMIT:
        raise _refuse(request, username, "this username from this address", window)
    if keys.address and int(found.get(keys.address) or 0) >= settings.LOGIN_FAILURE_ADDRESS_LIMIT:
        raise _refuse(request, username, "this address", window)
    if not usual:
        delay = slowdown(int(found.get(keys.user) or 0))
        try:
            # One check per delay, whoever asks first; add() is atomic in Redis, so parallel
            # guesses cannot all slip through between a read and a write.
            passed = not delay or cache.add(keys.gate, time.time() + delay, timeout=delay)
            opens = 0.0 if passed else float(cache.get(keys.gate) or 0)
            wait = math.ceil(opens - time.time()) if opens else delay
        except Exception as exc:
            log.error("login guard unavailable, sign-in not slowed: %s", exc)
            passed = True
        if not passed:
            raise _refuse(request, username, "slowed down", wait)
    return Attempt(keys, pair_failures=pair, usual=usual)


def _count(cache, key: str, window: int) -> int:
    # add() starts the window only at the first failure; incr() keeps Redis' expiry.
    cache.add(key, 0, timeout=window)
    try:
        return cache.incr(key)
    except ValueError:  # the window ended between add() and incr()
        cache.add(key, 1, timeout=window)
        return 1


def login_failed(request, username: str, attempt: Attempt | None = None) -> None:
    """Count one failure against the pair, the address and (from an unusual address) the
    username, and log it."""
    attempt = attempt or Attempt(_keys(request, username))
    keys, window = attempt.keys, settings.LOGIN_FAILURE_WINDOW
    counts = []
    if attempt.counted:
        try:
            cache = _cache()
            for key, limit in ((keys.pair, settings.LOGIN_FAILURE_LIMIT),
                               (keys.address, settings.LOGIN_FAILURE_ADDRESS_LIMIT),
                               (None if attempt.usual else keys.user, None)):
                if key:
                    counts.append(f"{_count(cache, key, window)}/{limit or 'slow'}")
        except Exception as exc:
            log.error("login guard unavailable, failure not counted: %s", exc)
    log.warning("sign-in failed: username=%r address=%s path=%s failures=%s usual=%s", username[:64],
                client_address(request) if request is not None else "-", getattr(request, "path", "-"),
                ",".join(counts) or "uncounted", attempt.usual)


def login_succeeded(request, username: str, attempt: Attempt | None = None) -> None:
    """Clear the pair's count and remember the address as usual for this username. Both are
    written only when they change: API clients send Basic on every request."""
    attempt = attempt or Attempt(_keys(request, username), pair_failures=1)
    keys = attempt.keys
    if not attempt.counted:
        return
    try:
        cache = _cache()
        if keys.pair and attempt.pair_failures:
            cache.delete(keys.pair)
        if keys.usual and not attempt.usual:
            cache.set(keys.usual, 1, timeout=settings.LOGIN_USUAL_ADDRESS_DAYS * 86400)
    except Exception as exc:
        log.error("login guard unavailable, success not recorded: %s", exc)


class GuardedModelBackend(ModelBackend):
    """Django's ModelBackend with the guard around the password check (settings
    AUTHENTICATION_BACKENDS names this instead of ModelBackend)."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(self._username_field())
        if username is None or password is None:
            return None  # not a password check (ModelBackend answers None too)
        username = str(username)
        if not (parsing.credential_ok(username, max_chars=parsing.MAX_USERNAME_CHARS)
                and parsing.credential_ok(str(password), max_chars=parsing.MAX_PASSWORD_CHARS)):
            # No account has such a username or password (a NUL cannot even be looked up in
            # PostgreSQL): refused before the guard or the database see it.
            return None
        attempt = login_check(request, username)
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            login_failed(request, username, attempt)
        else:
            login_succeeded(request, username, attempt)
        return user

    @staticmethod
    def _username_field() -> str:
        from django.contrib.auth import get_user_model

        return get_user_model().USERNAME_FIELD


# --- the sign-in pages ---------------------------------------------------------------------

LOCKED_MESSAGE = "Too many failed sign-in attempts for this account or from this address. Try again later."


class LockoutFormMixin:
    """A sign-in form that shows a lockout as a form error instead of a server error."""

    def clean(self):
        try:
            return super().clean()
        except LoginLocked as exc:
            self.retry_after = exc.wait
            raise ValidationError(LOCKED_MESSAGE, code="locked") from None

    @property
    def locked(self) -> bool:
        return self.is_bound and self.has_error(NON_FIELD_ERRORS, code="locked")


class GuardedAuthenticationForm(LockoutFormMixin, auth_forms.AuthenticationForm):
    """The review desk's sign-in form."""


class GuardedAdminAuthenticationForm(LockoutFormMixin, AdminAuthenticationForm):
    """The admin site's sign-in form (admin.site.login_form, fieldsync/urls.py)."""


class GuardedLoginView(auth_views.LoginView):
    """LoginView answering 429 while locked out, so scripts see the refusal for what it is."""

    authentication_form = GuardedAuthenticationForm

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if getattr(form, "locked", False):
            response.status_code = 429
            response["Retry-After"] = str(int(getattr(form, "retry_after", None) or settings.LOGIN_FAILURE_WINDOW))
        return response
