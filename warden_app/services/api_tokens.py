"""Personal API tokens: issued to a user for desktop tools, shown once, revocable."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from ..models import ApiToken, User

TOKEN_PREFIX = "fsp_"
# last_used_at is a hint for whoever reviews tokens, not an audit trail: written at most
# this often, so a paging client does not write a row per request.
LAST_USED_PRECISION = timedelta(minutes=1)


def api_token_hash(token: str) -> str:
    # A fast hash is enough: the token has 256 bits of entropy, unlike a password.
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def api_token_create(*, user: User, name: str = "") -> tuple[ApiToken, str]:
    """A new token for `user`: the row, and the token itself (never stored)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.objects.create(user=user, name=name[:120], token_hash=api_token_hash(token))
    return row, token


def api_token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_token_user(token: str) -> tuple[User, ApiToken] | None:
    """The active user of an unrevoked token, or None."""
    row = ApiToken.objects.select_related("user").filter(token_hash=api_token_hash(token)).first()
    if row is None or row.revoked_at is not None or not row.user.is_active:
        return None
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row.user, row
