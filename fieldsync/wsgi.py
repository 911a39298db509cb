"""WSGI entry point used by gunicorn."""
import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fieldsync.settings")
application = get_wsgi_application()

# Load the URLconf (and with it every view module) now rather than on the first request,
# then move everything loaded so far out of the cyclic collector's sight. Django, DRF and
# GeoDjango leave some 125,000 long-lived objects, and each full collection walked them
# all: about 50 ms, which a push of 500 mutations, allocating as it goes, set off every
# fifth or sixth time. Frozen, a full collection takes about 1 ms.
get_resolver().url_patterns  # noqa: B018 - loading is the point
gc.freeze()
