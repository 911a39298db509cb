"""The front door's pages: sign-in at /, the home page of doors, sign-out, and a closed door."""
from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse, reverse_lazy
from django.views.decorators.cache import never_cache

from fieldsync.login_guard import GuardedLoginView
from warden_app.roles import roles_of

from .doors import Door, doors_for


class FrontDoorLoginView(GuardedLoginView):
    """Sign-in for every role; afterwards home (or the page that sent you here)."""

    template_name = "front_door/login.html"

    def get_default_redirect_url(self):
        return reverse("front_door:home")


@never_cache
def home(request: HttpRequest) -> HttpResponse:
    """Anonymous: the sign-in form. Signed in: the doors this user may open."""
    if not request.user.is_authenticated:
        return FrontDoorLoginView.as_view()(request)
    return render(request, "front_door/home.html", {
        "doors": doors_for(request.user), "has_role": bool(roles_of(request.user)),
    })


logout = auth_views.LogoutView.as_view(next_page=reverse_lazy("front_door:home"))


def door_closed(request: HttpRequest, closed: Door | None = None, reason: str = "") -> HttpResponse:
    """403 as a page a person can act on: what was refused, their own doors, and sign-out."""
    # `exception` is what handler403 passes to the same template (403.html); none here.
    return render(request, "front_door/door_closed.html", {"closed": closed, "reason": reason, "exception": ""},
                  status=403)
