"""The data protection officer's pages: thin views over selectors and services."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from warden_app.front_door.guards import door_required


@door_required("dpo")
def log(request: HttpRequest) -> HttpResponse:
    return render(request, "dpo_pages/log.html", {"door_key": "dpo"})
