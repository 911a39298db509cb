"""URLs of the handheld app (mounted at /warden/)."""
from django.urls import path

from . import views

urlpatterns = [
    path("", views.shell, name="handheld-shell"),
    path("manifest.webmanifest", views.manifest, name="handheld-manifest"),
    path("sw.js", views.service_worker, name="handheld-sw"),
]
