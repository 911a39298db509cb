"""URLs of the analyst workspace, under /analysis/."""
from django.urls import path

from . import views

app_name = "analysis_workspace"

urlpatterns = [
    path("", views.map, name="map"),
    path("records/<str:record_type>/<uuid:record_id>", views.record, name="record"),
    path("exports/", views.exports, name="exports"),
    path("connect/", views.connect, name="connect"),
    path("connect/tokens", views.token_create, name="token-create"),
    path("connect/tokens/<int:token_id>/revoke", views.token_revoke, name="token-revoke"),
    path("grants/", views.grants, name="grants"),
]
