"""`door_required`: the one guard of every workspace page."""
from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest
from django.urls import reverse
from django.views.decorators.cache import never_cache

from .doors import door
from .views import door_closed


def door_required(key: str):
    """Anonymous → the front door's sign-in, coming back here after; signed in without the
    right → the 403 page that says so and offers sign-out. Pages are never cached: they may
    hold personal data."""
    the_door = door(key)

    def decorate(view):
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path(), reverse("front_door:login"))
            if not the_door.may_open(request.user):
                return door_closed(request, the_door)
            return view(request, *args, **kwargs)

        return never_cache(wrapped)

    return decorate
