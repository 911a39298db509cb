"""URLs of the DPO's pages, mounted at /dpo/."""
from django.urls import path

from . import views

app_name = "dpo_pages"

urlpatterns = [
    path("", views.log, name="log"),
    path("entries/<int:entry_id>/", views.entry, name="entry"),
    path("verification/", views.verification, name="verification"),
    path("subjects/", views.subjects, name="subjects"),
    path("subjects/export/", views.subjects_export, name="subjects_export"),
    path("records/<str:record_type>/<uuid:record_id>/rectify/", views.rectify, name="rectify"),
    path("records/<str:record_type>/<uuid:record_id>/restrict/", views.restrict, name="restrict"),
    path("records/<str:record_type>/<uuid:record_id>/erase/", views.erase, name="erase"),
]
