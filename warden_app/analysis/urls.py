"""Records API and exports, mounted under /api/v1/ beside the sync protocol."""
from django.urls import path

from . import token_views, views

urlpatterns = [
    path("records/<str:record_type>", views.RecordsView.as_view(), name="analysis-records"),
    path("records/<str:record_type>/<uuid:record_id>", views.RecordDetailView.as_view(), name="analysis-record"),
    path("exports", views.ExportsView.as_view(), name="analysis-exports"),
    path("exports/<uuid:export_id>", views.ExportDetailView.as_view(), name="analysis-export"),
    path("tokens", token_views.TokensView.as_view(), name="api-tokens"),
    path("tokens/<int:token_id>", token_views.TokenDetailView.as_view(), name="api-token"),
    path("exports/<uuid:export_id>/file", views.ExportFileView.as_view(), name="analysis-export-file"),
]
