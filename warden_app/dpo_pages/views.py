"""The data protection officer's pages: thin views over accountability's selectors and
services (the same ones the DPO's API calls), so every rule, scope and log row is theirs.

What each page logs, as the API does (docs/accountability.md):
- the access log and one entry: a `consultation` of record_type `access_log` naming the
  entries shown (`access_log_consulted`);
- subject access and its export: the service's `consultation` naming the records returned,
  with the purpose, the criteria named but never their values;
- rectify / restrict / erase: the service's `alteration` or `erasure` row;
- the chain verification shows seqs, row ids and hashes, no entry's content: not logged.

Personal data never travels in a URL: subject access is a POST (its criteria are a name or
a description), and its result pages follow on by POST too.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince
from django.views.decorators.http import require_POST

from fieldsync import parsing
from fieldsync.errors import ApiError, invalid
from warden_app import permissions
from warden_app.accountability.selectors import LogFilter, access_log_page, subject_criteria
from warden_app.accountability.services.access_log import access_log_consulted
from warden_app.accountability.services.subjects import (
    record_erase,
    record_rectify,
    record_restrict,
    subject_access_search,
)
from warden_app.accountability.verification import VerificationUnavailable, verification_last, verification_request
from warden_app.choices import IncidentType, Qualifier, ReviewState
from warden_app.front_door.guards import door_required
from warden_app.models import AccessAction, AccessLogEntry

from .chain_status import chain_statuses
from .queries import LOG_RECORD_TYPES, MAX_REASON_CHARS, RECORD_TYPE_LABELS, log_query, text
from .rectification import person_rows, rectify_changes

LOG_PAGE = 50
SUBJECTS_PAGE = 20
# An export is one person's records: more than this many pages means the search is too wide.
EXPORT_MAX_PAGES = 10
SEARCH_FIELDS = ("name", "description", "age", "age_min", "age_max", "purpose")
ERASABLE = sorted(permissions.PERSONAL_FIELDS["observation"])


def refusals(view):
    """A request the selectors or services refuse (ApiError) is answered with a page
    saying why, with the error's status (400 for bad input, 404 for no such record)."""
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except ApiError as exc:
            return render(request, "dpo_pages/refused.html", {
                "door_key": "dpo", "error": exc, "fields": _field_problems(exc.fields),
                "back": request.META.get("HTTP_REFERER", "") if _same_site(request) else "",
            }, status=exc.status_code)
    return wrapped


def _field_problems(fields: dict) -> list[tuple[str, str]]:
    found = []
    for name, problems in (fields or {}).items():
        for problem in problems if isinstance(problems, list) else [problems]:
            message = problem.get("message") or problem.get("code") if isinstance(problem, dict) else str(problem)
            found.append((str(name), str(message)))
    return found


def _same_site(request: HttpRequest) -> bool:
    referer = request.META.get("HTTP_REFERER", "")
    return referer.startswith(request.build_absolute_uri("/"))


# --- the access log ------------------------------------------------------------------------


def _verification() -> tuple[dict | None, dict | None, str]:
    """(the last full verification, a run under way, why neither is known), times parsed."""
    try:
        last, running = verification_last()
    except VerificationUnavailable as exc:
        return None, None, str(exc)
    if last:
        finished = _at(last.get("finished_at"))
        last = {**last, "started": _at(last.get("started_at")), "finished": finished, "ago": _ago(finished)}
    if running:
        running = {**running, "since_at": _at(running.get("since"))}
    return last, running, ""


def _ago(when: datetime | None) -> str:
    if when is None:
        return "at a time unknown"
    return "just now" if timezone.now() - when < timedelta(minutes=1) else f"{timesince(when)} ago"


def _at(value) -> datetime | None:
    return parsing.stored_instant(value)


@door_required("dpo")
@refusals
def log(request: HttpRequest) -> HttpResponse:
    """The access log, newest first, LOG_PAGE entries a page (keyset: ids below `before`)."""
    query = log_query(request.GET)
    with transaction.atomic():
        rows, more = access_log_page(query.filter, limit=LOG_PAGE, before=query.before)
        access_log_consulted(user=request.user, entry_ids=[r["id"] for r in rows], query=query.filter.describe(),
                             via="dpo_pages.access_log")
    verification, running, unavailable = _verification()
    statuses = chain_statuses(rows, verification)
    older = None
    if more and rows:
        params = QueryDict(mutable=True)
        params.update({k: v for k, v in query.form.items() if v})
        params["before"] = str(rows[-1]["id"])
        older = "?" + params.urlencode()
    return render(request, "dpo_pages/log.html", {
        "door_key": "dpo", "dpo_tab": "log", "entries": [_entry(r, statuses[r["id"]]) for r in rows],
        "form": query.form, "filtered": query.filtered, "paged": query.before is not None, "older": older,
        "actions": AccessAction.choices,
        "record_types": [(t, RECORD_TYPE_LABELS.get(t, t)) for t in LOG_RECORD_TYPES],
        "verification": verification, "running": running, "unavailable": unavailable,
    })


@door_required("dpo")
@refusals
def entry(request: HttpRequest, entry_id: int) -> HttpResponse:
    """One entry in full, through the same selector as the list (one row of it)."""
    if entry_id > parsing.INT_MAX - 1:
        raise ApiError("not_found", "No such entry.", status_code=404)
    with transaction.atomic():
        rows, _more = access_log_page(LogFilter(), limit=1, before=entry_id + 1)
        if not rows or rows[0]["id"] != entry_id:
            raise ApiError("not_found", "No such entry.", status_code=404)
        access_log_consulted(user=request.user, entry_ids=[entry_id], query={"entry": entry_id},
                             via="dpo_pages.access_log_entry")
    verification, _running, unavailable = _verification()
    row = rows[0]
    seal = AccessLogEntry.objects.filter(pk=entry_id).values("prev_hash", "xid").first() or {}
    return render(request, "dpo_pages/entry.html", {
        "door_key": "dpo", "dpo_tab": "log", "e": _entry(row, chain_statuses(rows, verification)[entry_id]),
        "prev_hash": seal.get("prev_hash"), "xid": seal.get("xid"),
        "details_json": json.dumps(row["details"], indent=2, ensure_ascii=False, sort_keys=True),
        "verification": verification, "unavailable": unavailable,
    })


ACTION_LABELS = dict(AccessAction.choices)


def _entry(row: dict, status) -> dict[str, Any]:
    details = row["details"] if isinstance(row["details"], dict) else {}
    return {
        "id": row["id"], "at": row["at"], "actor": row["actor__username"] or "", "actor_id": row["actor_id"],
        "action": row["action"], "action_label": ACTION_LABELS.get(row["action"], row["action"]),
        "record_type": row["record_type"],
        "record_type_label": RECORD_TYPE_LABELS.get(row["record_type"], row["record_type"]),
        "record_ids": [str(i) for i in row["record_ids"]],
        "device_id": row["device_id"], "recipient": row["recipient"], "purpose": row["purpose"],
        "via": details.get("via", ""), "details": details, "seq": row["seq"], "hash": row["hash"],
        "status": status,
    }


# --- the chain's verification --------------------------------------------------------------


@door_required("dpo")
def verification(request: HttpRequest) -> HttpResponse:
    """GET: the last full verification (run by the worker) and any run under way.
    POST: ask the worker for a run now."""
    if request.method == "POST":
        try:
            queued = verification_request(requested_by=request.user.get_username())
        except VerificationUnavailable as exc:
            messages.error(request, f"The verification could not be started: {exc}.")
        else:
            messages.success(request, "Verification asked for: the worker checks the chain, and its result shows "
                                      "here when it is done." if queued else "A verification is already running.")
        return redirect("dpo_pages:verification")
    last, running, unavailable = _verification()
    return render(request, "dpo_pages/verification.html", {
        "door_key": "dpo", "dpo_tab": "verification", "v": last, "running": running, "unavailable": unavailable,
        "unsealed": AccessLogEntry.objects.filter(seq__isnull=True).count(),
        "anchor_configured": bool(settings.ACCESS_LOG_ANCHOR),
    })


# --- subject access ------------------------------------------------------------------------


def _search(post: QueryDict) -> dict[str, str]:
    """The search as typed, carried on in the page's forms (never in a URL)."""
    return {name: text(name, post.get(name), max_chars=MAX_REASON_CHARS if name == "purpose" else 200)
            for name in SEARCH_FIELDS}


@door_required("dpo")
@refusals
def subjects(request: HttpRequest) -> HttpResponse:
    """GET: the search form. POST: a page of every record naming the person, each with its
    rectify, restrict and erase forms."""
    context: dict[str, Any] = {"door_key": "dpo", "dpo_tab": "subjects", "search": dict.fromkeys(SEARCH_FIELDS, ""),
                               "purpose_required": settings.ACCESS_LOG_PURPOSE_REQUIRED}
    if request.method != "POST":
        return render(request, "dpo_pages/subjects.html", context)
    search = _search(request.POST)
    after = parsing.uuid_value("after", text("after", request.POST.get("after")))
    records, more = subject_access_search(user=request.user, criteria=subject_criteria(search),
                                          purpose=search["purpose"], limit=SUBJECTS_PAGE, after=after,
                                          via="dpo_pages.subjects")
    context |= {"search": search, "searched": True, "records": [_record(r) for r in records], "more": more,
                "next_after": records[-1]["id"] if more and records else "", "paged": after is not None,
                "erasable": ERASABLE}
    return render(request, "dpo_pages/subjects.html", context)


@door_required("dpo")
@require_POST
@refusals
def subjects_export(request: HttpRequest) -> HttpResponse:
    """Every record of the search as one JSON file for the reply to the subject, read page
    by page through the same service (each page its own consultation row)."""
    search = _search(request.POST)
    criteria = subject_criteria(search)
    found, after = [], None
    for _page in range(EXPORT_MAX_PAGES):
        records, more = subject_access_search(user=request.user, criteria=criteria, purpose=search["purpose"],
                                              limit=settings.ACCESS_LOG_PAGE_MAX, after=after,
                                              via="dpo_pages.subjects_export")
        found += records
        if not more or not records:
            break
        after = records[-1]["id"]
    else:
        raise ApiError("invalid", f"More than {len(found)} records match: narrow the search before exporting.")
    now = timezone.now()
    body = {
        "schema": "fieldsync.subject_access/1", "generated_at": now.isoformat(),
        "generated_by": request.user.get_username(), "purpose": search["purpose"],
        "criteria": {k: v for k, v in search.items() if v and k != "purpose"},
        "records": found,
    }
    response = HttpResponse(json.dumps(body, indent=2, ensure_ascii=False), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="subject-access-{now:%Y%m%d-%H%M%S}.json"'
    response["Cache-Control"] = "no-store"
    return response


def _record(r: dict) -> dict[str, Any]:
    return {
        **r, "qualifier_label": _label(Qualifier, r["qualifier"]),
        "incident_label": _label(IncidentType, r["incident_type"]),
        "review_label": _label(ReviewState, r["review_state"]),
        "persons": [p for p in r["persons_involved"] if isinstance(p, dict)] if isinstance(
            r["persons_involved"], list) else [],
        "person_rows": person_rows(r["persons_involved"]),
    }


def _label(choices, value) -> str:
    return dict(choices.choices).get(value, value or "")


# --- rectify, restrict, erase --------------------------------------------------------------


def _confirmed(post: QueryDict) -> str:
    """The stated reason (the service requires it) and the ticked confirmation."""
    justification = text("justification", post.get("justification"), max_chars=MAX_REASON_CHARS)
    if post.get("confirm") != "yes":
        raise invalid("confirm", "required", "not confirmed",
                      summary="Tick the box to confirm: nothing was changed.")
    return justification


def _log_mark() -> int:
    """The newest log row's id now: the act's own row is the one of this user after it."""
    return AccessLogEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _own_row(request, mark: int, record_id) -> dict | None:
    return (AccessLogEntry.objects.filter(id__gt=mark, actor=request.user, record_ids__contains=[record_id])
            .order_by("-id").values("id", "action", "purpose", "details").first())


def _outcome(request, *, record_type: str, record_id, action: str, what: list[str],
             entry: dict | None) -> HttpResponse:
    return render(request, "dpo_pages/outcome.html", {
        "door_key": "dpo", "dpo_tab": "subjects", "action": action, "what": what, "record_type": record_type,
        "record_id": str(record_id), "entry": entry, "search": _search(request.POST),
        "record_log": reverse("dpo_pages:log") + "?" + QueryDict.fromkeys(["record"], str(record_id)).urlencode(),
    })


@door_required("dpo")
@require_POST
@refusals
def rectify(request: HttpRequest, record_type: str, record_id) -> HttpResponse:
    justification = _confirmed(request.POST)
    changes = rectify_changes(request.POST)
    mark = _log_mark()
    version = record_rectify(user=request.user, record_type=record_type, record_id=record_id, changes=changes,
                             justification=justification)
    # The service's own alteration row says which fields changed (never their values).
    row = _own_row(request, mark, record_id)
    fields = (row or {}).get("details", {}).get("rectified", [])
    what = ([f"Corrected: {', '.join(fields)}.", f"The record is now version {version}; handhelds holding it "
             "receive the correction at their next sync."] if fields else
            ["Nothing differed from what was held: no field changed (the request is logged all the same)."])
    return _outcome(request, record_type=record_type, record_id=record_id, action="Rectified", what=what,
                    entry=row)


@door_required("dpo")
@require_POST
@refusals
def restrict(request: HttpRequest, record_type: str, record_id) -> HttpResponse:
    justification = _confirmed(request.POST)
    raw = text("restricted", request.POST.get("restricted"))
    if not raw:
        raise invalid("restricted", "required", "restrict or lift")
    restricted = parsing.boolean("restricted", raw)
    mark = _log_mark()
    changed = record_restrict(user=request.user, record_type=record_type, record_id=record_id,
                              restricted=restricted, justification=justification)
    if restricted:
        what = ["Processing restricted: the record stays stored and open to you and to subject access; analysis, "
                "exports, aggregates and escalation leave it out."] if changed else [
                "The record was restricted already: nothing changed, nothing logged."]
    else:
        what = ["Restriction lifted: the record is processed as before."] if changed else [
                "The record was not restricted: nothing changed, nothing logged."]
    return _outcome(request, record_type=record_type, record_id=record_id,
                    action="Restricted" if restricted else "Restriction lifted", what=what,
                    entry=_own_row(request, mark, record_id) if changed else None)


@door_required("dpo")
@require_POST
@refusals
def erase(request: HttpRequest, record_type: str, record_id) -> HttpResponse:
    justification = _confirmed(request.POST)
    fields = request.POST.getlist("fields")
    if not fields:
        raise invalid("fields", "required", "none chosen", summary="Choose at least one field to erase.")
    unknown = sorted(set(fields) - set(ERASABLE))
    if unknown:
        raise invalid("fields", "not_in_choices", "not erasable",
                      summary=f"These are not personal fields of the record: {', '.join(unknown)[:200]}")
    erased, logged = record_erase(user=request.user, record_type=record_type, record_id=record_id,
                                      justification=justification, fields=fields)
    details = erased.details()
    what = [f"Erased: {', '.join(details.get('fields', fields))}, in the record and in every copy."]
    copies = {f"earlier {k}" if k == "versions" else k: v for k, v in details["copies"].items() if v}
    copies |= {k.replace("_", " "): details[k] for k in ("photos_deleted", "exports_deleted") if details[k]}
    if copies:
        what.append("Cleaned as well: " + ", ".join(f"{k} {v}" for k, v in copies.items()) + ".")
    if details.get("exports_pending"):
        what.append("Export files still being built are deleted once their build ends.")
    return _outcome(request, record_type=record_type, record_id=record_id, action="Erased", what=what,
                    entry={"id": logged.pk, "action": logged.action, "purpose": logged.purpose})
