"""/favicon.ico: browsers ask for it on every page that names no icon (the admin, the API
docs), and a 404 there is noise in every log and every browser console."""
from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe


@require_safe
@cache_control(public=True, max_age=86400)
def favicon(request: HttpRequest) -> HttpResponseRedirect:
    # Resolved per request: the hashed static name exists only once collectstatic has run.
    return HttpResponseRedirect(static("handheld/icons/icon-192.png"))
