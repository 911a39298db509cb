"""The analyst's workspace: thin views over the records API's selectors and the services.

Every read goes through analysis/selectors.records_query (scope, filters, redaction) and the
API's page-and-log step, so a page shows exactly what the API would give the same person and
logs it the same way. Bad input is a 400 page naming the problem; a record the user may not
see is the same 404 page as one that does not exist."""
from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from fieldsync import parsing
from fieldsync.errors import ApiError
from warden_app import permissions
from warden_app.analysis.export_files import STREAMED_FORMATS
from warden_app.analysis.filters import RECORD_TYPES, record_filter_parse
from warden_app.analysis.selectors import records_query
from warden_app.analysis.views import read_log, stream_response
from warden_app.basemaps.config import map_config
from warden_app.front_door.guards import door_required
from warden_app.models import Export, PurposeGrant, PurposeGrantRequest
from warden_app.roles import Role
from warden_app.services.api_tokens import api_token_create, api_token_revoke_own, api_tokens_of
from warden_app.services.exports import export_request
from warden_app.services.purpose_requests import purpose_request_make

from . import selectors
from .query import TYPE_LABELS, Invalid, workspace_query

DOOR = "analysis"
# The download buttons: format, name, what it is for. CSV and GeoJSON download straight away
# (the API's stream) unless the read is too large to stream; XLSX and GeoPackage are files
# built in the background, like large reads.
EXPORT_FORMATS = (("csv", "CSV"), ("xlsx", "Excel (XLSX)"), ("geojson", "GeoJSON"), ("gpkg", "GeoPackage"))
FORMAT_USES = {"csv": "text for any spreadsheet or script", "xlsx": "a spreadsheet with real dates",
               "geojson": "web maps, WGS84", "gpkg": "QGIS, British National Grid"}
STREAMED = STREAMED_FORMATS
TOKEN_NAME_MAX = 120


def _page(request, template: str, context: dict, status: int = 200) -> HttpResponse:
    return render(request, f"analysis_workspace/{template}", {"door_key": DOOR, **context}, status=status)


def _invalid(request, problems: list[str], status: int = 400) -> HttpResponse:
    return _page(request, "invalid.html", {"problems": problems}, status=status)


@door_required(DOOR)
def map(request: HttpRequest) -> HttpResponse:
    try:
        query = workspace_query(request.GET)
    except Invalid as invalid:
        return _invalid(request, invalid.problems)
    records, more = selectors.records_page(request, query)
    points = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": r.location, "properties": {
            "url": reverse("analysis_workspace:record", args=[query.record_type, r.id]),
            "what": r.what, "when": r.when}}
        for r in records if r.location
    ]}
    flt = query.filter
    return _page(request, "map.html", {"tab": "map",
        "query": query, "flt": flt, "records": records,
        "next_query": query.encoded(after=records[-1].id) if more else None,
        "first_page": query.encoded() if query.after else None,
        "types": list(TYPE_LABELS.items()), "type_label": TYPE_LABELS[query.record_type],
        "options": selectors.filter_options(),
        "from_date": flt.time_from.date().isoformat() if flt.time_from else "",
        "to_date": (flt.time_to - timezone.timedelta(days=1)).date().isoformat() if flt.time_to else "",
        "polygon": flt.polygon.wkt if flt.polygon is not None else "",
        "map_config": map_config(),
        "map_data": {"points": points, "layers": selectors.layers_read(request.user, query)},
        "downloads": [{"format": fmt, "name": name, "use": FORMAT_USES[fmt], "now": fmt in STREAMED}
                      for fmt, name in EXPORT_FORMATS],
        "stream_max": settings.ANALYSIS_STREAM_MAX_ROWS,
        "export_params": query.params(),
    })


@door_required(DOOR)
def record(request: HttpRequest, record_type: str, record_id) -> HttpResponse:
    page = selectors.record_read(request, record_type, record_id) if record_type in RECORD_TYPES else None
    if page is None:
        return _page(request, "not_found.html", {}, status=404)
    return _page(request, "record.html", {
        "record": page, "type_label": TYPE_LABELS[record_type], "map_config": map_config(),
        "map_data": {"location": page.location, "route": page.route},
    })


@door_required(DOOR)
@require_http_methods(["GET", "POST"])
def exports(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        record_type = request.POST.get("type", "")
        fmt = request.POST.get("format", "")
        if record_type not in RECORD_TYPES or fmt not in dict(EXPORT_FORMATS):
            return _invalid(request, ["Choose a kind of record and one of the formats on the list."])
        params = {k: request.POST.get(k) for k in request.POST if k not in {"type", "format", "csrfmiddlewaretoken"}}
        try:
            if fmt in STREAMED:
                streamed = _download_now(request, record_type, fmt, params)
                if streamed is not None:
                    return streamed
            export_request(user=request.user, record_type=record_type, fmt=fmt, params=params)
        except ApiError as exc:
            return _invalid(request, [str(exc.message)[:300]], status=exc.status_code)
        large = "&large=1" if fmt in STREAMED else ""
        return redirect(reverse("analysis_workspace:exports") + f"?requested={fmt}{large}")
    rows = Export.objects.filter(owner=request.user).order_by("-created_at")[:50]
    return _page(request, "exports.html", {"tab": "exports",
        "exports": [{"export": e, "type_label": TYPE_LABELS.get(e.record_type, e.record_type),
                     "format_label": dict(EXPORT_FORMATS).get(e.format, e.format)} for e in rows],
        "requested": dict(EXPORT_FORMATS).get(request.GET.get("requested", ""), ""),
        "large": request.GET.get("large") == "1", "stream_max": settings.ANALYSIS_STREAM_MAX_ROWS,
    })


def _download_now(request: HttpRequest, record_type: str, fmt: str, params: dict) -> HttpResponse | None:
    """CSV or GeoJSON of the filter, streamed as the records API streams it (scoped,
    redacted, its disclosure row committed first); None when it is too large to stream."""
    query = records_query(request.user, record_type, record_filter_parse(record_type, params))
    if query.count_up_to(settings.ANALYSIS_STREAM_MAX_ROWS + 1) > settings.ANALYSIS_STREAM_MAX_ROWS:
        return None
    log = read_log(request, query, action="disclosure", view=f"workspace.download.{fmt}",
                   recipient=request.user.get_username())
    return stream_response(query, fmt, log)


@door_required(DOOR)
def connect(request: HttpRequest) -> HttpResponse:
    return _connect_page(request)


def _connect_page(request: HttpRequest, created_token: str = "", problem: str = "", status: int = 200) -> HttpResponse:
    base = request.build_absolute_uri("/")[:-1]
    return _page(request, "connect.html", {"tab": "connect",
        "ogc_url": base + reverse("ogc-landing"),
        "records_url": base + reverse("analysis-records", args=["observation"]),
        "base": base,
        "tokens": api_tokens_of(request.user),
        "created_token": created_token, "problem": problem,
    }, status=status)


@door_required(DOOR)
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "")
    if len(name) > TOKEN_NAME_MAX or "\x00" in name:
        return _connect_page(request, problem=f"A name of at most {TOKEN_NAME_MAX} characters.", status=400)
    try:
        _row, token = api_token_create(user=request.user, name=name)
    except ApiError as exc:
        return _connect_page(request, problem=str(exc.message), status=exc.status_code)
    # Shown on this answer only: the token is never stored, so it cannot be shown again.
    return _connect_page(request, created_token=token)


@door_required(DOOR)
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    try:
        api_token_revoke_own(user=request.user, token_id=token_id)
    except ApiError:
        return _page(request, "not_found.html", {}, status=404)
    return redirect("analysis_workspace:connect")


def _day(raw: str, *, end: bool) -> datetime | None:
    """A day typed in the form (YYYY-MM-DD): its start in the partnership's zone, with `end`
    the next day's (fieldsync.parsing.instant); None when it is not one: the form says so."""
    try:
        day = parsing.day("day", raw)
        return parsing.instant(day.isoformat(), end=end) if day else None
    except (ApiError, parsing.BadInstant):
        return None


@door_required(DOOR)
@require_http_methods(["GET", "POST"])
def grants(request: HttpRequest) -> HttpResponse:
    errors: dict[str, str] = {}
    form = {"record_type": "observation", "fields": [], "purpose": "", "valid_from": "", "valid_until": ""}
    status = 200
    if request.method == "POST":
        form = {"record_type": request.POST.get("record_type", ""), "fields": request.POST.getlist("fields"),
                "purpose": request.POST.get("purpose", ""), "valid_from": request.POST.get("valid_from", ""),
                "valid_until": request.POST.get("valid_until", "")}
        until = _day(form["valid_until"], end=True)
        start = _day(form["valid_from"], end=False) if form["valid_from"] else None
        if until is None:
            errors["valid_until"] = "give the last day the fields are needed"
        elif form["valid_from"] and start is None:
            errors["valid_from"] = "a date, or leave it empty to start today"
        else:
            try:
                purpose_request_make(user=request.user, record_type=form["record_type"], fields=form["fields"],
                                     purpose=form["purpose"], valid_from=start, valid_until=until)
                return redirect(reverse("analysis_workspace:grants") + "?sent=1")
            except PermissionDenied as exc:
                errors["purpose"] = str(exc)
            except ValidationError as exc:
                errors |= {k: " ".join(v) for k, v in exc.message_dict.items()}
        status = 400
    personal = {t: sorted(permissions.PERSONAL_FIELDS.get(t, ())) for t in RECORD_TYPES}
    return _page(request, "grants.html", {"tab": "grants",
        "requests": [_labelled(r) for r in PurposeGrantRequest.objects.filter(requested_by=request.user)[:50]],
        "grants": [_labelled(g) for g in PurposeGrant.objects.filter(user=request.user).order_by("-valid_until")[:50]],
        "now": timezone.now(),
        "form": form, "errors": errors, "sent": request.GET.get("sent") == "1",
        "may_ask": permissions.has_role(request.user, Role.ANALYST),
        "choices": [{"type": t, "label": TYPE_LABELS[t], "fields": [
            {"name": f, "label": selectors.FIELD_LABELS.get(f, f.replace("_", " ").capitalize())} for f in personal[t]
        ]} for t in RECORD_TYPES if personal[t]],
    }, status=status)


def _labelled(row):
    """A request or grant with its fields in words (`field_labels`), for the page."""
    row.field_labels = ", ".join(selectors.FIELD_LABELS.get(f, f) for f in row.fields)
    return row
