"""The domain's URLs: API endpoints and web pages."""
from django.urls import include, path

urlpatterns = [
    path("api/v1/", include("warden_app.analysis.urls")),
    path("api/v1/aggregates/", include("warden_app.aggregates.urls")),
    path("api/v1/", include("warden_app.accountability.urls")),  # dpo/…, escalations
    path("warden/", include("warden_app.handheld.urls")),
    path("tiles/", include("warden_app.basemaps.urls")),
    path("review/", include("warden_app.review_desk.urls")),
    path("ogc/", include("warden_app.analysis.ogc_urls")),
    path("analysis/", include("warden_app.analysis_workspace.urls")),
    path("partner/", include("warden_app.partner_dashboard.urls")),
    path("dpo/", include("warden_app.dpo_pages.urls")),
    path("", include("warden_app.front_door.urls")),
]
