"""Brute-force guard for every password check: the review desk and admin sign-in pages, device
enrolment and HTTP Basic on the API (QGIS, GDAL) all end in `django.contrib.auth.authenticate`,
so the guard sits in the authentication backend and covers them all at once (docs/security.md).

Failed checks are counted in Redis per username and per client address, in a fixed window that
starts at the first failure. Once either count reaches its limit, every further check for that
username or from that address is refused *before* the password is looked at, so a correct
password is refused too and the answer tells an attacker nothing, until the window passes.
A successful check clears the username's count (not the address's: one valid account must not
let an address keep spraying other usernames). Refused checks are not counted, so a lockout
ends when its window does.

If Redis cannot be reached the guard lets checks through and logs an error: a Redis outage
must not lock every administrator out of the pages needed to deal with it, and the password
hasher still makes each guess slow. The sync API's throttles fail open for the same reason.
"""
from __future__ import annotations

import hashlib
import logging

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
    """Raised by the backend while a username or address is locked out.

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


def _user_key(username: str) -> str:
    # Hashed: usernames are typed by anyone, and a key must be short and plain ASCII.
    digest = hashlib.sha256(username.strip().casefold().encode("utf-8", "replace")).hexdigest()[:32]
    return f"{PREFIX}:user:{digest}"


def _address_key(address: str) -> str:
    return f"{PREFIX}:addr:{address}"


def _cache():
    return caches[settings.LOGIN_GUARD_CACHE]


def _keys(request, username: str) -> list[tuple[str, int]]:
    """(cache key, limit) pairs for this attempt; no address key without a request (e.g. a
    management command authenticating on someone's behalf)."""
    keys = [(_user_key(username), settings.LOGIN_FAILURE_LIMIT)]
    if request is not None:
        keys.append((_address_key(client_address(request)), settings.LOGIN_FAILURE_ADDRESS_LIMIT))
    return keys


def login_check(request, username: str) -> int:
    """Raise LoginLocked if this username or address has used up its failures; otherwise
    return the username's failures so far (0 when Redis is down)."""
    keys = _keys(request, username)
    try:
        counts = _cache().get_many([key for key, _ in keys])
    except Exception as exc:  # Redis down: fail open (module docstring)
        log.error("login guard unavailable, sign-in not rate limited: %s", exc)
        return 0
    for key, limit in keys:
        if int(counts.get(key) or 0) >= limit:
            log.warning("sign-in refused (locked out): username=%r address=%s path=%s",
                        username[:64], client_address(request), getattr(request, "path", "-"))
            raise LoginLocked(wait=settings.LOGIN_FAILURE_WINDOW)
    return int(counts.get(keys[0][0]) or 0)


def login_failed(request, username: str) -> None:
    """Count one failure against the username and the address, and log it."""
    cache, window = _cache(), settings.LOGIN_FAILURE_WINDOW
    counts = []
    try:
        for key, limit in _keys(request, username):
            # add() starts the window only at the first failure; incr() keeps Redis' expiry.
            cache.add(key, 0, timeout=window)
            try:
                count = cache.incr(key)
            except ValueError:  # the window ended between add() and incr()
                cache.add(key, 1, timeout=window)
                count = 1
            counts.append(f"{count}/{limit}")
    except Exception as exc:
        log.error("login guard unavailable, failure not counted: %s", exc)
    log.warning("sign-in failed: username=%r address=%s path=%s failures=%s", username[:64],
                client_address(request), getattr(request, "path", "-"), ",".join(counts) or "uncounted")


def login_succeeded(request, username: str) -> None:
    try:
        _cache().delete(_user_key(username))
    except Exception as exc:
        log.error("login guard unavailable, count not cleared: %s", exc)


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
        earlier = login_check(request, username)
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            login_failed(request, username)
        elif earlier:
            # Only when there is something to clear: API clients send Basic on every request.
            login_succeeded(request, username)
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
        except LoginLocked:
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
            response["Retry-After"] = str(settings.LOGIN_FAILURE_WINDOW)
        return response
