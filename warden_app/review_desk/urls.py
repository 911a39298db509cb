"""URLs of the review desk, mounted at /review/."""
from django.contrib.auth import views as auth_views
from django.urls import path, register_converter, reverse_lazy

from . import views


class RecordTypeConverter:
    """Only the reviewed types match; anything else is a plain 404."""

    regex = "observation|street_audit"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(RecordTypeConverter, "desk_record_type")

app_name = "review_desk"

urlpatterns = [
    # The brute-force guard answers 429 with a form error while the username or address is
    # locked out (fieldsync/login_guard.py).
    path("login/", views.DeskLoginView.as_view(
        template_name="review_desk/login.html", redirect_authenticated_user=False,
    ), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page=reverse_lazy("review_desk:login")), name="logout"),
    path("", views.queue, name="queue"),
    path("records/<desk_record_type:record_type>/<uuid:record_id>/", views.record_detail, name="record"),
    path("records/<desk_record_type:record_type>/<uuid:record_id>/review", views.record_decide, name="decide"),
    path("records/<desk_record_type:record_type>/<uuid:record_id>/photos/<str:sha256>",
         views.record_photo, name="photo"),
    path("records/<desk_record_type:record_type>/<uuid:record_id>/photos/<str:sha256>/thumb",
         views.record_photo, {"size": "thumb"}, name="photo_thumb"),
    path("conflicts/", views.conflict_list, name="conflicts"),
    path("conflicts/<uuid:conflict_id>/", views.conflict_detail, name="conflict"),
    path("quarantine/", views.quarantine_list, name="quarantine"),
    path("quarantine/<int:item_id>/", views.quarantine_detail, name="quarantine_item"),
    path("devices/", views.device_list, name="devices"),
    path("devices/<uuid:device_id>/revoke", views.device_revoke_view, name="device_revoke"),
    path("tokens/", views.token_list, name="tokens"),
    path("tokens/<int:token_id>/revoke", views.token_revoke_view, name="token_revoke"),
]
