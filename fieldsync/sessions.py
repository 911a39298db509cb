"""Django's database sessions, with the session key checked before it is looked up.

The key comes from the Cookie header, as the client wrote it: Django only checks its length,
so a cookie `sessionid="aaaaaaaa\\000"` (an escaped NUL, which Django's cookie parser unquotes)
reached PostgreSQL, which cannot hold NUL in text: a 500 on every page. Django's keys are 32
lower-case letters and digits; anything else is no session (a fresh, anonymous one)."""
from __future__ import annotations

import re

from django.contrib.sessions.backends import db

_KEY = re.compile(r"[a-z0-9]{8,40}")


class SessionStore(db.SessionStore):
    def _validate_session_key(self, key) -> bool:
        return isinstance(key, str) and bool(_KEY.fullmatch(key))
