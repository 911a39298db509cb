"""Pages of the review desk. Thin: parse the request, ask a selector, call a service.

Every page is for supervisors only (403 for anyone else, login for the anonymous); every
record, conflict, quarantined mutation and device is fetched through the selectors' scope,
so one outside it is a 404 whether it exists or not. The services check permissions again
and write the log.
"""
from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from fieldsync.errors import ApiError
from fieldsync.login_guard import GuardedLoginView
from fieldsync.sync.api import device_revoke

from ..basemaps.config import map_config
from ..choices import ReviewState
from ..services.api_tokens import api_token_create, api_token_revoke_own, api_tokens_of
from ..services.review import conflict_resolve, quarantine_resolve, review_decide
from . import labels, selectors
from .forms import (
    ApiTokenForm,
    ConflictResolveForm,
    ListFilterForm,
    QuarantineResolveForm,
    QueueFilterForm,
    ReviewDecisionForm,
)

SHA256_CHARS = frozenset("0123456789abcdef")
QUEUE_FILTER_FIELDS = ("state", "type", "area", "author", "date_from", "date_to")
# Decisions that take a record out of the supervisor's hands; a comment does not.
DECIDING = {ReviewState.APPROVED.value, ReviewState.HAS_ISSUES.value, ReviewState.REJECTED.value}


class DeskLoginView(GuardedLoginView):
    """The desk's sign-in: a supervisor lands on the queue, anyone else on their API tokens
    (the one desk page that is theirs), unless a `next` page was asked for."""

    def get_default_redirect_url(self):
        if selectors.desk_allowed(self.request.user):
            return reverse("review_desk:queue")
        return reverse("review_desk:tokens")


def supervisor_required(view):
    """Anonymous → the desk's login page; signed in without the supervisor role → 403.
    Pages are never cached: they may hold personal data."""
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("review_desk:login"))
        if not selectors.desk_allowed(request.user):
            raise PermissionDenied("The review desk is for supervisors.")
        return view(request, *args, **kwargs)

    return never_cache(wrapped)


def _service_refused(request: HttpRequest, error: ApiError) -> None:
    """Turn a service's refusal into the HTTP answer a page gives: 404 and 403 as such;
    anything else is shown on the page it came from."""
    if error.status_code == 404:
        raise Http404(error.message)
    if error.status_code == 403:
        raise PermissionDenied(error.message)


# --- queue and records -------------------------------------------------------------------------

@require_GET
@supervisor_required
def queue(request: HttpRequest) -> HttpResponse:
    choices = selectors.queue_filter_choices(request.user)
    form = QueueFilterForm(request.GET or None, **choices)
    filters = form.filters()
    page = selectors.queue_page(request.user, filters, request.GET.get("page"))
    return render(request, "review_desk/queue.html", {
        "form": form, "page": page, "query": _query_of(form), "section": "queue",
        "map_data": selectors.queue_map_data(request.user, filters), "map_config": map_config(),
    })


def _query_of(form: QueueFilterForm) -> str:
    """The queue's valid filters as a query string (no page, nothing else), so a record
    opened from a filtered queue knows which queue to go on with."""
    query = QueryDict(mutable=True)
    if form.is_bound:
        form.is_valid()
        for name in QUEUE_FILTER_FIELDS:
            if name not in form.errors and form.data.get(name):
                query[name] = form.data[name]
    return query.urlencode()


def _queue_form(request: HttpRequest, data) -> QueueFilterForm:
    return QueueFilterForm(data, **selectors.queue_filter_choices(request.user))


def _record_response(request, record_type, record_id, form=None, status=200, refused: str = "",
                     queue_query: str = "") -> HttpResponse:
    page = selectors.record_page(request.user, record_type, record_id)
    if page is None:
        raise Http404("No such record in your areas.")
    if refused:
        # The page now shows the record as it is; the form keeps what the supervisor
        # typed but names the version on screen, so deciding again acts on what they see.
        form = ReviewDecisionForm({**request.POST.dict(), "version": page.record.version})
        form.is_valid()
        form.add_error(None, refused)
    elif form is None:
        form = ReviewDecisionForm(initial={"version": page.record.version})
    return render(request, "review_desk/record.html", {
        "page": page, "record": page.record, "form": form, "section": "queue",
        "map_config": map_config(), "queue_query": queue_query,
    }, status=status)


@require_GET
@supervisor_required
def record_detail(request: HttpRequest, record_type: str, record_id) -> HttpResponse:
    queue_query = _query_of(_queue_form(request, request.GET)) if request.GET else ""
    return _record_response(request, record_type, record_id, queue_query=queue_query)


@require_POST
@supervisor_required
def record_decide(request: HttpRequest, record_type: str, record_id) -> HttpResponse:
    if selectors.record_in_scope(request.user, record_type, record_id) is None:
        raise Http404("No such record in your areas.")
    queue_form = _queue_form(request, QueryDict(request.POST.get("queue", "")[:1000]))
    queue_query = _query_of(queue_form)
    form = ReviewDecisionForm(request.POST)
    if not form.is_valid():
        return _record_response(request, record_type, record_id, form=form, status=400, queue_query=queue_query)
    try:
        review = review_decide(
            reviewer=request.user, record_type=record_type, record_id=record_id,
            decision=form.cleaned_data["decision"], note=form.cleaned_data["note"],
            expected_version=form.cleaned_data.get("version"),
        )
    except ApiError as error:
        _service_refused(request, error)
        return _record_response(request, record_type, record_id, status=error.status_code, refused=error.message,
                                queue_query=queue_query)
    decided = f"{review.get_decision_display()}: saved as version {review.record_version}."
    if review.decision not in DECIDING:
        # A comment decides nothing: the supervisor stays with the record they commented on.
        messages.success(request, decided)
        return redirect("review_desk:record", record_type=record_type, record_id=record_id)
    return _go_on_with_queue(request, decided, record_type, record_id, queue_form)


def _go_on_with_queue(request: HttpRequest, decided: str, record_type: str, record_id, queue_form):
    """After a decision, the next record of the queue the supervisor came from (same
    filters), or the queue itself when nothing is left in it."""
    queue_query = _query_of(queue_form)
    suffix = f"?{queue_query}" if queue_query else ""
    following = selectors.queue_next(request.user, queue_form.filters(), record_type, record_id)
    if following is None:
        messages.success(request, f"{decided} Nothing left to review.")
        return redirect(reverse("review_desk:queue") + suffix)
    messages.success(request, f"{decided} Next in the queue: {following['type_label'].lower()} "
                              f"\u201c{following['summary']}\u201d.")
    return redirect(reverse("review_desk:record", args=[following["type"], following["id"]]) + suffix)


@require_GET
@supervisor_required
def record_photo(request: HttpRequest, record_type: str, record_id, sha256: str, size: str = "full"):
    """A photo named by a record in scope, streamed from storage (never a public URL)."""
    if len(sha256) != 64 or not set(sha256) <= SHA256_CHARS:
        raise Http404("No such photo.")
    attachment = selectors.photo_in_scope(request.user, record_type, record_id, sha256)
    if attachment is None or not attachment.file:
        raise Http404("No such photo, or it has not arrived yet.")
    stored = attachment.thumbnail if size == "thumb" and attachment.thumbnail else attachment.file
    selectors.photo_consulted(request.user, record_type, record_id, sha256, size=size)
    content_type = "image/jpeg" if stored is attachment.thumbnail else attachment.content_type
    try:
        handle = stored.open("rb")
    except FileNotFoundError:
        raise Http404("The photo's file is missing from storage.") from None
    response = FileResponse(handle, content_type=content_type)
    response["Cache-Control"] = "private, no-store"
    response["Content-Disposition"] = f'inline; filename="{sha256[:12]}"'
    return response


# --- conflicts -------------------------------------------------------------------------------

@require_GET
@supervisor_required
def conflict_list(request: HttpRequest) -> HttpResponse:
    show = ListFilterForm(request.GET).show_value()
    page = selectors.conflict_list_page(request.user, show=show, page_number=request.GET.get("page"))
    return render(request, "review_desk/conflicts.html", {"page": page, "show": show, "section": "conflicts"})


@require_http_methods(["GET", "POST"])
@supervisor_required
def conflict_detail(request: HttpRequest, conflict_id) -> HttpResponse:
    conflict = selectors.conflict_in_scope(request.user, conflict_id)
    if conflict is None:
        raise Http404("No such conflict in your areas.")
    form = ConflictResolveForm(request.POST or None, field_names=list(conflict.fields))
    status = 200
    if request.method == "POST":
        if conflict.resolved_at is not None:
            form.add_error(None, "This conflict is already resolved.")
            status = 409
        elif form.is_valid():
            try:
                conflict_resolve(user=request.user, conflict_id=conflict.pk, choices=form.choices(),
                                 note=form.cleaned_data["note"])
            except ApiError as error:
                _service_refused(request, error)
                form.add_error(None, error.message)
                status = error.status_code
                conflict.refresh_from_db()
            else:
                messages.success(request, "Conflict resolved.")
                return redirect("review_desk:conflict", conflict_id=conflict.pk)
        else:
            status = 400
    page = selectors.conflict_page(request.user, conflict)
    rows = [{**row, "field": form[form.key(row["name"])]} for row in page.rows]
    return render(request, "review_desk/conflict.html", {
        "page": page, "conflict": conflict, "rows": rows, "form": form, "section": "conflicts",
    }, status=status)


# --- quarantine ------------------------------------------------------------------------------

@require_GET
@supervisor_required
def quarantine_list(request: HttpRequest) -> HttpResponse:
    show = ListFilterForm(request.GET).show_value()
    page = selectors.quarantine_list_page(request.user, show=show, page_number=request.GET.get("page"))
    return render(request, "review_desk/quarantine.html", {"page": page, "show": show, "section": "quarantine"})


@require_http_methods(["GET", "POST"])
@supervisor_required
def quarantine_detail(request: HttpRequest, item_id: int) -> HttpResponse:
    item = selectors.quarantine_item_in_scope(request.user, item_id)
    if item is None:
        raise Http404("No such quarantined mutation from your teams.")
    form = QuarantineResolveForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if item.resolved_at is not None:
            form.add_error(None, "This item is already resolved.")
            status = 409
        elif form.is_valid():
            try:
                quarantine_resolve(user=request.user, item_id=item.pk, note=form.cleaned_data["note"])
            except ApiError as error:
                _service_refused(request, error)
                form.add_error(None, error.message)
                status = error.status_code
            else:
                messages.success(request, "Quarantined mutation resolved.")
                return redirect("review_desk:quarantine_item", item_id=item.pk)
        else:
            status = 400
    item = selectors.quarantine_item_page(request.user, item)
    return render(request, "review_desk/quarantine_item.html", {
        "item": item, "form": form, "section": "quarantine",
    }, status=status)


# --- devices ----------------------------------------------------------------------------------

@require_GET
@supervisor_required
def device_list(request: HttpRequest) -> HttpResponse:
    rows = selectors.team_devices(request.user)
    return render(request, "review_desk/devices.html", {"rows": rows, "section": "devices"})


@require_POST
@supervisor_required
def device_revoke_view(request: HttpRequest, device_id) -> HttpResponse:
    device = selectors.device_in_scope(request.user, device_id)
    if device is None:
        raise Http404("No such device in your teams.")
    try:
        device = device_revoke(device=device, by=request.user)
    except ApiError as error:
        _service_refused(request, error)
        messages.error(request, error.message)
        return redirect("review_desk:devices")
    messages.success(request, f"{device.label} ({device.user.get_username()}) is revoked: it will wipe "
                              "its data at its next sync.")
    return redirect("review_desk:devices")


# --- your API tokens (any signed-in user, not only supervisors) ------------------------------

def signed_in_required(view):
    """Anonymous → the desk's login page. Any role: analysts hold most tokens."""
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("review_desk:login"))
        return view(request, *args, **kwargs)

    return never_cache(wrapped)


@require_http_methods(["GET", "POST"])
@signed_in_required
def token_list(request: HttpRequest) -> HttpResponse:
    """Your tokens; POST makes one, shown on this page once (the answer is never cached)."""
    created, status = None, 200
    if request.method == "POST":
        form = ApiTokenForm(request.POST)
        if form.is_valid():
            created = api_token_create(user=request.user, name=form.cleaned_data["name"])[1]
            form = ApiTokenForm()
        else:
            status = 400
    else:
        form = ApiTokenForm()
    return render(request, "review_desk/tokens.html", {
        "tokens": [(token, labels.token_state(token.state)) for token in api_tokens_of(request.user)],
        "form": form, "created": created, "section": "tokens",
        "lifetime_days": settings.API_TOKEN_LIFETIME_DAYS,
    }, status=status)


@require_POST
@signed_in_required
def token_revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
    try:
        row = api_token_revoke_own(user=request.user, token_id=token_id)
    except ApiError as error:
        _service_refused(request, error)
        raise
    messages.success(request, f"The token {row.prefix}… ({row.name or 'unnamed'}) is revoked.")
    return redirect("review_desk:tokens")
