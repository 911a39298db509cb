"""WSGI entry point used by gunicorn."""
import gc
import json
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fieldsync.settings")
django_application = get_wsgi_application()


def application(environ, start_response):
    """Django behind a check of what it would otherwise choke on or hand to PostgreSQL (a
    NUL in Content-Type's charset fails Django's request before any handler runs: a bare 500
    from the server). Refused with 400, in the protocol's shape on the API; see
    fieldsync.parsing.request_problem."""
    from fieldsync.parsing import request_problem

    refusal = request_problem(environ)
    if refusal is None:
        return django_application(environ, start_response)
    if environ.get("PATH_INFO", "").startswith(("/api/", "/ogc/")):
        body = json.dumps({"code": refusal.code, "message": refusal.message, "fields": refusal.fields}).encode()
        content_type = "application/json"
    else:
        body, content_type = refusal.message.encode(), "text/plain; charset=utf-8"
    start_response("400 Bad Request", [("Content-Type", content_type), ("Content-Length", str(len(body))),
                                       ("Cache-Control", "no-store")])
    return [body]


# Load the URLconf (and with it every view module) now rather than on the first request,
# then move everything loaded so far out of the cyclic collector's sight. Django, DRF and
# GeoDjango leave some 125,000 long-lived objects, and each full collection walked them
# all: about 50 ms, which a push of 500 mutations, allocating as it goes, set off every
# fifth or sixth time. Frozen, a full collection takes about 1 ms.
get_resolver().url_patterns  # noqa: B018 - loading is the point
gc.freeze()
