"""The analyst's workspace: thin views over selectors and services."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from warden_app.front_door.guards import door_required


@door_required("analysis")
def map(request: HttpRequest) -> HttpResponse:
    return render(request, "analysis_workspace/map.html", {"door_key": "analysis"})
