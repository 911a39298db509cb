"""What every page's header needs: the reader's doors (front_door/doors.py)."""
from __future__ import annotations

from django.http import HttpRequest

from .doors import door_at, doors_for


def site_doors(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    # Callables: templates call them only on pages that show the doors (the header, the 403
    # page), so other pages pay nothing.
    here = {"site_door_here": lambda: door_at(getattr(request, "path", ""))}
    if not (user and user.is_authenticated):
        return {"site_doors": [], **here}
    return {"site_doors": lambda: doors_for(user), **here}
