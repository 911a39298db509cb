"""Project-wide 404/500 handlers: API paths answer in the protocol's error shape."""
from django.http import JsonResponse
from django.views import defaults

API_PREFIXES = ("/api/", "/ogc/")


def _is_api(request) -> bool:
    return request.path.startswith(API_PREFIXES)


def not_found(request, exception=None):
    if _is_api(request):
        return JsonResponse({"code": "not_found", "message": "No such endpoint.", "fields": {}}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        return JsonResponse({"code": "server_error", "message": "Internal error; it has been logged.", "fields": {}},
                            status=500)
    return defaults.server_error(request)


def bad_request(request, exception=None):
    if _is_api(request):
        return JsonResponse({"code": "bad_request", "message": "The request could not be understood.", "fields": {}},
                            status=400)
    return defaults.bad_request(request, exception)
