"""The partner viewer's dashboard: thin views over selectors and services."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from warden_app.front_door.guards import door_required


@door_required("partner")
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "partner_dashboard/home.html", {"door_key": "partner"})
