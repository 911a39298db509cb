"""URLs of the accountability part, mounted under /api/v1/ (warden_app/urls.py)."""
from django.urls import path

from . import views

urlpatterns = [
    path("dpo/access-log", views.AccessLogView.as_view(), name="dpo-access-log"),
    path("dpo/subjects", views.SubjectsView.as_view(), name="dpo-subjects"),
    path("dpo/records/<str:record_type>/<uuid:record_id>", views.SubjectRecordView.as_view(), name="dpo-record"),
    path("dpo/records/<str:record_type>/<uuid:record_id>/restriction", views.SubjectRestrictView.as_view(),
         name="dpo-record-restriction"),
    path("dpo/records/<str:record_type>/<uuid:record_id>/erasure", views.SubjectEraseView.as_view(),
         name="dpo-record-erasure"),
    path("escalations", views.EscalationsView.as_view(), name="escalations"),
    path("escalations/endpoints", views.PartnerEndpointsView.as_view(), name="escalation-endpoints"),
    path("escalations/<uuid:escalation_id>", views.EscalationDetailView.as_view(), name="escalation"),
]
