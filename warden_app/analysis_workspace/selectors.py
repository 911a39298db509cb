"""What the workspace's pages read: records through the records API's own query (scope,
filter, redaction in SQL: analysis/selectors.py) and its own page-and-log step
(analysis/views.read_page), and the internal counts and hotspots of the aggregates selectors.

Nothing here decides who sees what: a record row is exactly the API's JSON for it, the
personal fields the API would redact are null and named in its `redacted` list, and every
page that returns personal fields writes the same s.62 row the API writes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from django.http import QueryDict
from django.utils import timezone
from django.utils.dateformat import format as date_format

from fieldsync import parsing
from fieldsync.errors import ApiError

from .. import choices
from ..aggregates import disclosure
from ..aggregates import selectors as aggregates
from ..aggregates.access import aggregate_audience
from ..aggregates.params import internal_query
from ..analysis.filters import RecordFilter
from ..analysis.selectors import COLUMNS, records_query
from ..analysis.views import read_log, read_page
from ..models import Area, Organisation, Review
from ..partner_dashboard.choropleth import CLASS_COLOURS, CLASS_LABELS
from ..partner_dashboard.selectors import area_outlines
from .query import WorkspaceQuery

PAGE_SIZE = 50
TIME_FIELD = {"observation": "observed_at", "street_audit": "started_at", "audit_item": "audit_started_at"}
# Codes shown with their labels (choices.py), by property name.
LABELS: dict[str, dict[str, str]] = {
    "qualifier": dict(choices.Qualifier.choices),
    "incident_type": dict(choices.IncidentType.choices),
    "issue_type": dict(choices.IssueType.choices),
    "grade": dict(choices.Grade.choices),
    "review_state": dict(choices.ReviewState.choices),
    "fix_source": dict(choices.FixSource.choices),
    "action_taken": dict(choices.ActionTaken.choices),
}
FIELD_LABELS = {
    "version": "Version", "organisation": "Organisation", "author": "Recorded by", "area_id": "Area id",
    "area": "Area", "qualifier": "ASB category", "incident_type": "Incident type", "observed_at": "Observed at",
    "review_state": "Review state", "description": "Description", "action_taken": "Action taken",
    "persons_involved": "Persons involved", "photos": "Photos", "title": "Title", "started_at": "Started at",
    "finished_at": "Finished at", "notes": "Notes", "route": "Route", "street_audit": "Street audit",
    "audit_started_at": "Audit started at", "issue_type": "Issue type", "grade": "Grade",
    "responsible_agency": "Responsible agency", "accuracy_m": "Location accuracy (m)", "fix_source": "Location from",
    "form_version": "Form version", "created_at": "Received", "updated_at": "Last changed",
}
HIDDEN_FIELDS = {"area_id", "route"}


def shown_time(text: str | None) -> str:
    """An API time (RFC 3339, UTC) as the partnership reads it: "30 Nov 2026 17:15"."""
    moment = parsing.stored_instant(text)
    return date_format(timezone.localtime(moment), "j M Y H:i") if moment else (text or "")


def label(name: str, code: Any) -> str:
    if code is None or code == "":
        return ""
    return LABELS.get(name, {}).get(code, str(code))


@dataclass(frozen=True)
class ListedRecord:
    id: str
    when: str | None
    what: str
    category: str
    area: str
    organisation: str
    review_state: str
    location: dict | None


def _what(record_type: str, props: dict) -> str:
    if record_type == "observation":
        return label("incident_type", props.get("incident_type"))
    if record_type == "street_audit":
        return props.get("title") or "Street audit"
    return label("issue_type", props.get("issue_type"))


def _category(record_type: str, props: dict) -> str:
    if record_type == "observation":
        return label("qualifier", props.get("qualifier"))
    if record_type == "audit_item":
        return label("grade", props.get("grade"))
    return ""


def records_page(request, query: WorkspaceQuery) -> tuple[list[ListedRecord], bool]:
    """One page of the list (and the map's points), logged as the API logs its list."""
    rq = records_query(request.user, query.record_type, query.filter)
    log = read_log(request, rq, action="consultation", view="workspace.records.list")
    rows, more = read_page(rq, shape="record", limit=PAGE_SIZE, after=query.after, log=log)
    listed = []
    for row in rows:
        props = orjson.loads(row[1])
        listed.append(ListedRecord(
            id=props["id"], when=shown_time(props.get(TIME_FIELD[query.record_type])),
            what=_what(query.record_type, props), category=_category(query.record_type, props),
            area=props.get("area") or "", organisation=props.get("organisation") or "",
            review_state=label("review_state", props.get("review_state")), location=props.get("location"),
        ))
    return listed, more


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    value: Any
    withheld: bool
    kind: str

    @property
    def empty(self) -> bool:
        return self.value is None or self.value == "" or self.value == [] or self.value == {}


@dataclass(frozen=True)
class RecordPage:
    record_type: str
    id: str
    fields: list[Field]
    location: dict | None
    route: dict | None
    review_state: str
    reviews: list[dict]
    props: dict


def record_read(request, record_type: str, record_id) -> RecordPage | None:
    """One record as the API's detail gives it, logged as the API logs it; None when the
    user may not see it (or it does not exist): the same 404 either way."""
    rq = records_query(request.user, record_type, RecordFilter(record_type=record_type, include_rejected=True))
    rq.base = rq.base.filter(pk=record_id)
    log = read_log(request, rq, action="consultation", view="workspace.records.detail")
    rows, _ = read_page(rq, shape="record", limit=1, after=None, log=log)
    if not rows:
        return None
    props = orjson.loads(rows[0][1])
    redacted = set(props.get("redacted") or [])
    fields = []
    for column in COLUMNS[record_type]:
        if column.name in HIDDEN_FIELDS:
            continue
        value = props.get(column.name)
        if column.kind == "time" and isinstance(value, str):
            value = shown_time(value)
        if column.name in LABELS:
            value = (", ".join(label(column.name, v) for v in value) if isinstance(value, list)
                     else label(column.name, value))
        fields.append(Field(column.name, FIELD_LABELS.get(column.name, column.name.replace("_", " ").capitalize()),
                            value, column.name in redacted, column.kind))
    review_filter = {"street_audit_id": props.get("street_audit")} if record_type == "audit_item" else (
        {"observation_id": record_id} if record_type == "observation" else {"street_audit_id": record_id})
    reviews = [
        {"decision": label("review_state", r.decision) if r.decision != "comment" else "Comment",
         "at": r.created_at, "reviewer": r.reviewer.get_username(), "version": r.record_version}
        for r in Review.objects.filter(**review_filter).select_related("reviewer").order_by("created_at")
    ]
    return RecordPage(
        record_type=record_type, id=props["id"], fields=fields, location=props.get("location"),
        route=None if "route" in redacted else props.get("route"),
        review_state=label("review_state", props.get("review_state")), reviews=reviews, props=props,
    )


def filter_options() -> dict[str, Any]:
    """The lists the form offers (labels, not codes)."""
    return {
        "qualifiers": choices.Qualifier.choices,
        "incident_types": choices.IncidentType.choices,
        "issue_types": choices.IssueType.choices,
        "grades": choices.Grade.choices,
        "review_states": choices.ReviewState.choices,
        "areas": list(Area.objects.filter(boundary_set__operational=True).order_by("name").values_list("id", "name")),
        "organisations": list(Organisation.objects.order_by("name").values_list("slug", "name")),
    }


def layers_read(user, query: WorkspaceQuery) -> dict[str, Any] | None:
    """Counts per operational area and the hotspot surface for the kind of record, time range,
    categories and areas on the form: the internal outputs the aggregates API gives this user
    (its own parameter reading and scope). The aggregates take no qualifier, organisation,
    review state or shape, so those narrow the points only (the page says so). None when the
    aggregates API would not answer them."""
    audience = aggregate_audience(user)
    if audience is None or audience.partner:
        return None
    flt = query.filter
    asked = QueryDict(mutable=True)
    asked["record_type"] = query.record_type
    if flt.time_from:
        asked["start"] = flt.time_from.isoformat()
    if flt.time_to:
        asked["end"] = flt.time_to.isoformat()
    if flt.incident_type and query.record_type == "observation":
        asked["incident_type"] = ",".join(flt.incident_type)
    if flt.area:
        chosen = list(Area.objects.filter(pk__in=flt.area, boundary_set__operational=True)
                      .values_list("code", "boundary_set__slug"))
        sets = {slug for _, slug in chosen}
        if len(sets) != 1:  # none of them operational, or codes of two sets: no layers to match
            return None
        asked["boundary_set"] = sets.pop()
        asked["areas"] = ",".join(code for code, _ in chosen)
    try:
        iq = internal_query(asked, audience=audience, hotspots=True)
    except ApiError:
        return None
    counts = aggregates.counts_by_area(areas=iq.areas, records=iq.records)
    ids = [row.id for row in iq.areas]
    cells = aggregates.hotspot_surface(
        region_area_ids=ids, point_area_ids=ids, records=iq.records, bandwidth_m=iq.bandwidth_m,
        cell_m=iq.cell_m, min_records=disclosure.hotspot_min_records(),
    )
    hotspots = aggregates.hotspot_map(cells)
    outlines: dict[int, dict] = {}
    for set_id in sorted({row.boundary_set_id for row in iq.areas}):
        outlines |= area_outlines(boundary_set_id=set_id)
    most = max((row.count or 0 for row in counts), default=0)
    return {
        "counts": {"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": outlines[row.area.id],
             "properties": {"name": row.area.name, "count": row.count, "share": (row.count or 0) / most if most else 0}}
            for row in counts if row.area.id in outlines
        ]},
        "hotspots": {"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": geometry, "properties": {"class": cls, "label": CLASS_LABELS[cls]}}
            for geometry, cls in hotspots.features
        ]},
        "classes": CLASS_COLOURS,
    }
