"""The admin site, with the front door's answer for a signed-in person it does not open to.

Django's admin sends anyone who is not staff to its own sign-in page, even when they are signed
in, and says there "you are not authorised": a warden who follows a link into /admin/ lands on
a password form that cannot help them. Here a signed-in non-staff user gets the 403 page that
every other closed door gives (front_door/door_closed.html: their own doors and sign-out); the
anonymous still go to the admin's own guarded sign-in (fieldsync/login_guard.py).
"""
from __future__ import annotations

from functools import update_wrapper

from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig


class FieldsyncAdminSite(AdminSite):
    def admin_view(self, view, cacheable=False):
        inner = super().admin_view(view, cacheable)

        def guarded(request, *args, **kwargs):
            # Sign-out stays Django's (harmless, and it must work for anyone signed in).
            if (request.user.is_authenticated and not self.has_permission(request)
                    and request.path != self._logout_path()):
                from .doors import door
                from .views import door_closed

                return door_closed(request, door("admin"))
            return inner(request, *args, **kwargs)

        return update_wrapper(guarded, inner)

    def _logout_path(self) -> str:
        from django.urls import reverse

        return reverse("admin:logout", current_app=self.name)


class FieldsyncAdminConfig(AdminConfig):
    """INSTALLED_APPS names this instead of django.contrib.admin, so `admin.site` is ours."""

    default_site = "warden_app.front_door.admin_site.FieldsyncAdminSite"
