"""URLs of Analysis."""
from django.urls import path

from . import views

app_name = "analysis_workspace"

urlpatterns = [
    path("", views.map, name="map"),
]
