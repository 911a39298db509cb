"""Project-wide 400/403/404/500 handlers: API paths answer in the protocol's error shape, pages
in HTML. The 403 page is the template `403.html` (the front door's "not open to you" page, with
the reader's doors and sign-out: warden_app/templates/403.html); it is named, not imported, so
the project does not depend on the domain's code."""
import sys

import psycopg
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.views import defaults

from fieldsync.errors import error_body

API_PREFIXES = ("/api/", "/ogc/")
# The database could not be reached or went away mid-request (restart, failover, no free
# connection). Not a bug, so not a 500: nothing the client may rely on happened, and the same
# request sent again later is safe (a push that did commit answers `duplicate`). The engine's
# raw cursors raise psycopg's own classes, the ORM Django's.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


def _is_api(request) -> bool:
    return request.path.startswith(API_PREFIXES)


def not_found(request, exception=None):
    if _is_api(request):
        return JsonResponse(error_body("not_found", "No such endpoint."), status=404)
    return defaults.page_not_found(request, exception)


def permission_denied(request, exception=None):
    """A PermissionDenied raised by a page (the review desk for a non-supervisor, …). DRF views
    answer their own 401/403; this covers the plain Django views, under /api/ too."""
    if _is_api(request):
        return JsonResponse(error_body("permission_denied", str(exception or "")
                                       or "You do not have permission to do this."), status=403)
    return defaults.permission_denied(request, exception)


def server_error(request):
    if _is_api(request):
        # Django calls this handler while handling the exception, so it is still current.
        if isinstance(sys.exc_info()[1], DATABASE_UNAVAILABLE):
            response = JsonResponse(error_body("unavailable", "The database is unavailable; send the same "
                                               "request again shortly."), status=503)
            response["Retry-After"] = "5"
            return response
        return JsonResponse(error_body("server_error", "Internal error; it has been logged."), status=500)
    return defaults.server_error(request)


def bad_request(request, exception=None):
    if _is_api(request):
        return JsonResponse(error_body("bad_request", "The request could not be understood."), status=400)
    return defaults.bad_request(request, exception)
