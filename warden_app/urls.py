"""The domain's URLs: API endpoints and web pages."""
from django.urls import include, path

urlpatterns = [
    path("api/v1/", include("fieldsync.sync.urls")),
    path("api/v1/", include("warden_app.analysis.urls")),
    path("api/v1/aggregates/", include("warden_app.aggregates.urls")),
    path("api/v1/", include("warden_app.accountability.urls")),  # dpo/…, escalations
    path("warden/", include("warden_app.handheld.urls")),
    path("review/", include("warden_app.review_desk.urls")),
    path("ogc/", include("warden_app.analysis.ogc_urls")),
]
