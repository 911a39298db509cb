"""What every desk page's header needs to know about its reader."""
from __future__ import annotations

from django.http import HttpRequest

from . import selectors


def desk_reader(request: HttpRequest) -> dict:
    """`desk_supervisor`: whether the review pages are theirs. Analysts, partners and the DPO
    come to the desk for their API tokens only, and are shown only that."""
    user = getattr(request, "user", None)
    return {"desk_supervisor": bool(user and user.is_authenticated and selectors.desk_allowed(user))}
