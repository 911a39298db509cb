"""Device bearer tokens: random, shown once, stored only as a sha256 hash."""
import hashlib
import secrets

TOKEN_PREFIX = "fsd_"


def token_new() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    # A fast hash is enough: the token has 256 bits of entropy, unlike a password.
    return hashlib.sha256(token.encode()).hexdigest()
