"""Personal API tokens: issued to a user for desktop tools, shown once, listed and revoked by
their owner, ended by expiry (API_TOKEN_LIFETIME_DAYS), a password change or deactivation."""
from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from fieldsync.errors import ApiError

from .. import permissions
from ..models import ApiToken, User

log = logging.getLogger(__name__)

TOKEN_PREFIX = "fsp_"
SHOWN_PREFIX = 10  # "fsp_" and six characters of the secret, enough to tell tokens apart
# last_used_at is a hint for whoever reviews tokens, not an audit trail: written at most
# this often, so a paging client does not write a row per request.
LAST_USED_PRECISION = timedelta(minutes=1)
_FINGERPRINT_SALT = "warden_app.api_tokens.password"


def api_token_hash(token: str) -> str:
    # A fast hash is enough: the token has 256 bits of entropy, unlike a password.
    return hashlib.sha256(token.encode()).hexdigest()


def password_fingerprint(password_hash: str, secret: str | None = None) -> str:
    """An HMAC of a user's password hash: changes whenever the password does."""
    return salted_hmac(_FINGERPRINT_SALT, password_hash, secret=secret, algorithm="sha256").hexdigest()


def _password_unchanged(row: ApiToken, user: User) -> bool:
    # The fallbacks too: rotating SECRET_KEY (with the old one as a fallback) must not end
    # every token, as it does not end every session.
    for secret in [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]:
        if constant_time_compare(row.password_fingerprint, password_fingerprint(user.password, secret)):
            return True
    return False


@transaction.atomic
def api_token_create(*, user: User, name: str = "") -> tuple[ApiToken, str]:
    """A new token for `user`: the row, and the token itself (never stored)."""
    if not user.is_active:
        raise ApiError("permission_denied", "A deactivated user cannot have API tokens.", status_code=403)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = timezone.now()
    row = ApiToken.objects.create(
        user=user, name=name.strip()[:120], token_hash=api_token_hash(token), prefix=token[:SHOWN_PREFIX],
        expires_at=now + timedelta(days=settings.API_TOKEN_LIFETIME_DAYS),
        password_fingerprint=password_fingerprint(user.password),
    )
    log.info("api token %s created for user %s (expires %s)", row.pk, user.pk, row.expires_at.isoformat())
    return row, token


def api_token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_token_revoke_own(*, user: User, token_id: int) -> ApiToken:
    """Revoke one of `user`'s own tokens. Anyone else's is 404, as one that does not exist:
    token ids are not for finding out who has tokens."""
    row = ApiToken.objects.filter(pk=token_id, user=user).first()
    if row is None:
        raise ApiError("not_found", "You have no such API token.", status_code=404)
    api_token_revoke(token=row)
    row.refresh_from_db()
    log.info("api token %s revoked by its owner %s", row.pk, user.pk)
    return row


def api_tokens_revoke_as_admin(*, tokens: Iterable[ApiToken], by: User) -> int:
    """An administrator ends tokens of anyone (a lost laptop, someone leaving): how many
    were still unrevoked. The owner sees them as revoked on their tokens page."""
    if not permissions.can_manage(by):
        raise PermissionDenied("only an administrator revokes other people's API tokens")
    ids = [row.pk for row in tokens]
    with transaction.atomic():
        ended = list(ApiToken.objects.filter(pk__in=ids, revoked_at__isnull=True)
                     .select_for_update().values_list("pk", flat=True))
        ApiToken.objects.filter(pk__in=ended).update(revoked_at=timezone.now())
    for pk in ended:
        log.info("api token %s revoked by administrator %s", pk, by.pk)
    return len(ended)


@dataclass(frozen=True)
class TokenListing:
    """A token as its owner sees it in a list: never the secret, nor its hash."""

    id: int
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    state: str  # active | expired | revoked | password_changed

    def as_json(self) -> dict:
        return {"id": self.id, "name": self.name, "prefix": self.prefix, "state": self.state,
                **{k: (v.isoformat() if v else None) for k, v in (
                    ("created_at", self.created_at), ("expires_at", self.expires_at),
                    ("last_used_at", self.last_used_at), ("revoked_at", self.revoked_at))}}


def api_token_state(row: ApiToken, now: datetime | None = None) -> str:
    """active | expired | revoked | password_changed, as its owner's list says."""
    return _state(row, row.user, now or timezone.now())


def _state(row: ApiToken, user: User, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at <= now:
        return "expired"
    if not _password_unchanged(row, user):
        return "password_changed"
    return "active"


def api_tokens_of(user: User) -> list[TokenListing]:
    """`user`'s own tokens, newest first."""
    now = timezone.now()
    return [TokenListing(row.pk, row.name, row.prefix, row.created_at, row.expires_at, row.last_used_at,
                         row.revoked_at, _state(row, user, now))
            for row in ApiToken.objects.filter(user=user).order_by("-created_at", "-pk")]


def api_token_user(token: str) -> tuple[User, ApiToken] | None:
    """The active user of a token that has not expired, been revoked or outlived its
    user's password, or None."""
    row = ApiToken.objects.select_related("user").filter(token_hash=api_token_hash(token)).first()
    if row is None or not row.user.is_active:
        return None
    now = timezone.now()
    if _state(row, row.user, now) != "active":
        return None
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row.user, row
