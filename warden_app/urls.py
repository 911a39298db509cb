"""The domain's URLs: API endpoints and web pages."""
from django.urls import include, path

urlpatterns = [
    path("api/v1/", include("fieldsync.sync.urls")),
    path("warden/", include("warden_app.handheld.urls")),
    path("review/", include("warden_app.review_desk.urls")),
]
