"""Sync protocol v1 endpoints (docs/sync-protocol.md), mounted under /api/v1/."""
from django.urls import path

from . import views

urlpatterns = [
    path("devices/enrol", views.EnrolView.as_view(), name="sync-enrol"),
    path("devices/<uuid:device_id>/revoke", views.RevokeView.as_view(), name="sync-revoke"),
    path("sync/manifest", views.ManifestView.as_view(), name="sync-manifest"),
    path("sync/push", views.PushView.as_view(), name="sync-push"),
    path("sync/pull", views.PullView.as_view(), name="sync-pull"),
    path("sync/status", views.StatusView.as_view(), name="sync-status"),
    path("attachments/<str:sha256>", views.AttachmentView.as_view(), name="sync-attachment"),
    path("attachments/<str:sha256>/thumbnail", views.AttachmentThumbnailView.as_view(),
         name="sync-attachment-thumbnail"),
]
