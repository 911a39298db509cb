"""Tile URLs (mounted at /tiles/)."""
from django.urls import path

from . import views

urlpatterns = [
    path("<str:version>/<str:z>/<str:x>/<str:name>", views.tile, name="basemap-tile"),
]
