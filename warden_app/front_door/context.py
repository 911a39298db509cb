"""What every page's header needs: the reader's doors (front_door/doors.py)."""
from __future__ import annotations

from django.http import HttpRequest

from .doors import doors_for


def site_doors(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if not (user and user.is_authenticated):
        return {"site_doors": []}
    # A callable: templates call it only on pages that show the doors.
    return {"site_doors": lambda: doors_for(user)}
