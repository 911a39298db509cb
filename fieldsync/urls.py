"""Top-level URL map: admin, API (sync protocol and domain), schema and docs."""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from fieldsync import favicon, health
from fieldsync.login_guard import GuardedAdminAuthenticationForm

# The admin's sign-in shows the brute-force guard's lockout as a form error (login_guard.py).
admin.site.login_form = GuardedAdminAuthenticationForm

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # Our template: drf-spectacular's own links Google Fonts, and no page loads from outside.
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="schema", template_name="api_docs/redoc.html"),
        name="api-redoc",
    ),
    path("healthz", health.liveness, name="healthz"),
    path("readyz", health.readiness, name="readyz"),
    path("favicon.ico", favicon.favicon, name="favicon"),
    # The engine's protocol is wired by the project; the domain's URLs follow it.
    path("api/v1/", include("fieldsync.sync.urls")),
    path("", include("warden_app.urls")),
]

handler400 = "fieldsync.error_pages.bad_request"
handler403 = "fieldsync.error_pages.permission_denied"
handler404 = "fieldsync.error_pages.not_found"
handler500 = "fieldsync.error_pages.server_error"
