"""Aggregate endpoints, mounted under /api/v1/aggregates/."""
from django.urls import path

from . import views

urlpatterns = [
    path("boundary-sets", views.BoundarySetsView.as_view(), name="aggregates-boundary-sets"),
    path("counts", views.CountsView.as_view(), name="aggregates-counts"),
    path("hotspots", views.HotspotsView.as_view(), name="aggregates-hotspots"),
]
