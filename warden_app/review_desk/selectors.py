"""Reads for the review desk: every query applies the supervisor's scope here, once.

The scope is `permissions.can_review_record` written as a query: records in the areas the
user reviews, plus records outside every area by staff of the teams they supervise, never
their own. Redaction follows `permissions.visible_fields`, and a page that shows personal
fields writes its s.62 consultation row here, next to the decision to show them, so no
view can show them and forget the log.
"""
from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import CharField, Count, F, FloatField, Func, Q, QuerySet, Value
from django.urls import reverse
from django.utils import timezone

from fieldsync.sync.api import (
    Attachment,
    Conflict,
    Device,
    QuarantinedMutation,
    RecordVersion,
    devices_visible_to,
    missing_attachments,
    registered_type,
)

from .. import permissions
from ..choices import ActionTaken, FixSource, Grade, IncidentType, IssueType, Qualifier, ReviewState
from ..models import Area, AuditItem, Observation, StreetAudit, User
from ..roles import Role
from ..services.access_log import access_log_records
from ..services.review import OPEN_STATES
from . import labels

PAGE_SIZE = 25
# The record types the desk reviews, and the column that says when each happened.
REVIEWED = {"observation": Observation, "street_audit": StreetAudit}
WHEN = {"observation": "observed_at", "street_audit": "started_at"}
SUMMARY = {"observation": "incident_type", "street_audit": "title"}
# Every synced type whose conflicts a supervisor resolves; items are reviewed with their audit.
SCOPED = {**REVIEWED, "audit_item": AuditItem}
TO_REVIEW = (ReviewState.SUBMITTED.value, ReviewState.EDITED.value)
ALL_PERSONAL = frozenset().union(*permissions.PERSONAL_FIELDS.values())
WITHHELD = "(withheld)"


def desk_allowed(user) -> bool:
    """The desk is the supervisors' page; everyone else gets 403 on every page of it."""
    return permissions.has_role(user, Role.SUPERVISOR)


def review_scope(user) -> Q:
    """`permissions.can_review_record` as a filter for any of the synced record models."""
    if not desk_allowed(user):
        return Q(pk__in=[])
    areas = permissions.area_ids_with(user, permissions.REVIEW_AREA)
    members = permissions.supervised_user_ids(user)
    in_scope = Q(area_id__in=areas) | Q(area_id__isnull=True, author_id__in=members)
    return in_scope & ~Q(author_id=user.pk)


# --- the queue ---------------------------------------------------------------------------

@dataclass(frozen=True)
class QueueFilters:
    state: str = "to_review"  # "to_review", "all" or a ReviewState value
    record_type: str = ""
    area: str = ""  # an area id, "none" (outside every area) or "" (all)
    author: int | None = None
    date_from: date | None = None
    date_to: date | None = None


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


QUEUE_COLUMNS = ("q_id", "q_type", "q_when", "q_summary", "q_state", "q_author", "q_area", "q_version",
                 "q_updated", "q_x", "q_y")


def _queue_parts(user, filters: QueueFilters, among: dict[str, Q] | None = None) -> list[QuerySet]:
    """One query per reviewed type, filtered and annotated alike for a UNION; `among`
    narrows a type further (a Q on that type's own columns)."""
    scope = review_scope(user)
    parts = []
    for type_name, model in REVIEWED.items():
        if filters.record_type and filters.record_type != type_name:
            continue
        when = WHEN[type_name]
        qs = model.objects.filter(scope, deleted_at__isnull=True)
        if among is not None:
            qs = qs.filter(among.get(type_name, Q()))
        if filters.state == "to_review":
            qs = qs.filter(review_state__in=TO_REVIEW)
        elif filters.state != "all":
            qs = qs.filter(review_state=filters.state)
        if filters.area == "none":
            qs = qs.filter(area__isnull=True)
        elif filters.area:
            qs = qs.filter(area_id=int(filters.area))
        if filters.author:
            qs = qs.filter(author_id=filters.author)
        if filters.date_from:
            qs = qs.filter(**{f"{when}__gte": _day_start(filters.date_from)})
        if filters.date_to:
            qs = qs.filter(**{f"{when}__lt": _day_start(filters.date_to + timedelta(days=1))})
        # Only annotations, in one order: the UNION lines its columns up by position.
        qs = qs.annotate(
            q_id=F("id"),
            q_type=Value(type_name, output_field=CharField()),
            q_when=F(when),
            q_summary=F(SUMMARY[type_name]),
            q_state=F("review_state"),
            q_author=F("author__username"),
            q_area=F("area__name"),
            q_version=F("version"),
            q_updated=F("updated_at"),
            q_x=Func(F("location"), function="ST_X", output_field=FloatField()),
            q_y=Func(F("location"), function="ST_Y", output_field=FloatField()),
        ).values(*QUEUE_COLUMNS)
        parts.append(qs.order_by())
    return parts


def _queue_query(user, filters: QueueFilters, among: dict[str, Q] | None = None):
    parts = _queue_parts(user, filters, among)
    if not parts:
        return Observation.objects.none().values("id")
    combined = parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]
    return combined.order_by("-q_when", "q_id")


def queue_page(user, filters: QueueFilters, page_number: Any = 1) -> Page:
    """One page of the observations and street audits in scope, newest first, as dicts.

    Both types are read by one UNION query (plus its count), with author and area names
    joined in, so the page costs the same whatever it holds.
    """
    page = Paginator(_queue_query(user, filters), PAGE_SIZE).get_page(page_number)
    page.object_list = [_queue_row(row) for row in page.object_list]
    return page


def queue_next(user, filters: QueueFilters, record_type: str, record_id) -> dict | None:
    """The record after this one in the queue as `filters` order it (newest first), else the
    first one before it; never this record itself. None when nothing else matches.

    The decided record may have left the queue (approved is no longer "to review"), so its
    place is taken from its own time, not from its row."""
    model = REVIEWED.get(record_type)
    current = model.objects.filter(pk=record_id).values_list(WHEN[record_type], flat=True).first() \
        if model else None
    others = {name: ~Q(pk=record_id) for name in REVIEWED}
    if current is not None:
        after = {name: others[name] & (Q(**{f"{WHEN[name]}__lt": current})
                                       | Q(**{WHEN[name]: current, "pk__gt": record_id}))
                 for name in REVIEWED}
        row = _queue_query(user, filters, after).first()
        if row is not None:
            return _queue_row(row)
    row = _queue_query(user, filters, others).first()
    return _queue_row(row) if row is not None else None


MAP_POINTS = 500


def queue_map_data(user, filters: QueueFilters) -> dict:
    """The filtered queue's newest MAP_POINTS records as points, with the outlines of the
    areas this user reviews. Each point carries only what its queue row shows (type, what,
    author, area, state, when) and the link to its record page."""
    rows = [_queue_row(row) for row in _queue_query(user, filters)[:MAP_POINTS + 1]]
    total = len(rows)
    features = []
    for row in rows[:MAP_POINTS]:
        if row["x"] is None or row["y"] is None:
            continue
        features.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [row["x"], row["y"]]},
                         "properties": {"kind": "record", "type": row["type_label"], "summary": row["summary"],
                                        "author": row["author"], "area": row["area"] or "Outside every area",
                                        "state": row["state_label"], "review_state": row["state"],
                                        "when": _when(row["when"]),
                                        "url": reverse("review_desk:record", args=[row["type"], row["id"]])}})
    areas = Area.objects.filter(pk__in=permissions.area_ids_with(user, permissions.REVIEW_AREA)) \
        if desk_allowed(user) else Area.objects.none()
    for area in areas.only("id", "name", "geom").order_by("name"):
        features.append({"type": "Feature", "geometry": _geojson(area.geom),
                         "properties": {"kind": "area", "label": area.name}})
    return {"type": "FeatureCollection", "features": features,
            "capped": total > MAP_POINTS, "cap": MAP_POINTS}


def _queue_row(row: dict) -> dict:
    summary = row["q_summary"] or ""
    if row["q_type"] == "observation":
        summary = _label(IncidentType, summary)
    return {
        "id": row["q_id"],
        "type": row["q_type"],
        "type_label": "Observation" if row["q_type"] == "observation" else "Street audit",
        "when": row["q_when"],
        "summary": summary or "(untitled)",
        "state": row["q_state"],
        "state_label": _label(ReviewState, row["q_state"]),
        "author": row["q_author"],
        "area": row["q_area"],
        "version": row["q_version"],
        "updated_at": row["q_updated"],
        "x": row.get("q_x"),
        "y": row.get("q_y"),
    }


def queue_filter_choices(user) -> dict[str, list[tuple[str, str]]]:
    """The areas and authors a supervisor may filter their queue by."""
    scope = review_scope(user)
    areas = Area.objects.filter(pk__in=permissions.area_ids_with(user, permissions.REVIEW_AREA)) \
        if desk_allowed(user) else Area.objects.none()
    authors = User.objects.filter(
        Q(pk__in=Observation.objects.filter(scope).values("author_id"))
        | Q(pk__in=StreetAudit.objects.filter(scope).values("author_id"))
    ).order_by("username")
    return {
        "areas": [(str(a.pk), a.name) for a in areas.only("id", "name").order_by("name")],
        "authors": [(str(pk), name) for pk, name in authors.values_list("pk", "username")],
    }


# --- one record ----------------------------------------------------------------------------

@dataclass
class RecordPage:
    record_type: str
    record: Any
    visible: frozenset[str]
    personal_shown: frozenset[str]
    items: list = field(default_factory=list)
    versions: list = field(default_factory=list)
    item_versions: list = field(default_factory=list)
    reviews: list = field(default_factory=list)
    conflicts: list = field(default_factory=list)
    photos: list[dict] = field(default_factory=list)
    map_data: dict = field(default_factory=dict)
    fields: list[tuple[str, Any]] = field(default_factory=list)
    persons: list[list[tuple[str, Any]]] = field(default_factory=list)

    @property
    def can_decide(self) -> bool:
        return self.record.deleted_at is None and self.record.review_state in OPEN_STATES


def record_in_scope(user, record_type: str, record_id) -> Any | None:
    """The observation or street audit, if this user reviews it; None otherwise (the
    caller answers 404, so a record outside the scope is not even confirmed to exist)."""
    model = REVIEWED.get(record_type)
    if model is None:
        return None
    record = (
        model.objects.filter(review_scope(user), pk=record_id)
        .select_related("author", "area", "organisation", "device", "form")
        .first()
    )
    # The query is the scope; the plain function is asked too, so the two cannot drift.
    if record is None or not permissions.can_review_record(user, record):
        return None
    return record


def _all_fields(record_type: str) -> frozenset[str]:
    rtype = registered_type(record_type)
    return frozenset(rtype.field_map) if rtype else frozenset()


def visible_fields_of(user, record_type: str, record) -> frozenset[str]:
    return permissions.visible_fields(user, record_type, record, _all_fields(record_type))


def record_page(user, record_type: str, record_id) -> RecordPage | None:
    """Everything the record page shows, or None when out of scope.

    When personal fields are shown, one `consultation` row naming the record is written
    (s.62), in this request, before the page is rendered.
    """
    record = record_in_scope(user, record_type, record_id)
    if record is None:
        return None
    visible = visible_fields_of(user, record_type, record)
    personal = permissions.PERSONAL_FIELDS.get(record_type, frozenset()) & visible
    page = RecordPage(record_type=record_type, record=record, visible=visible, personal_shown=personal)
    page.fields = _record_fields(record_type, record, visible)
    item_ids: list = []
    if record_type == "street_audit":
        page.items = list(
            AuditItem.objects.filter(street_audit_id=record.pk).select_related("author", "area")
            .order_by("created_at", "id")
        )
        item_ids = [item.pk for item in page.items]
        for item in page.items:
            item.issue_label = _label(IssueType, item.issue_type)
            item.grade_label = _label(Grade, item.grade)
            item.visible_photos = item.photos if "photos" in visible_fields_of(user, "audit_item", item) else []
    page.versions = list(
        RecordVersion.objects.filter(record_type=record_type, record_id=record.pk)
        .select_related("user", "device").order_by("version")
    )
    if item_ids:
        number = {item.pk: n for n, item in enumerate(page.items, start=1)}
        page.item_versions = list(
            RecordVersion.objects.filter(record_type="audit_item", record_id__in=item_ids)
            .select_related("user", "device").order_by("created_at", "id")
        )
        for version in page.item_versions:
            version.item_number = number.get(version.record_id)
    for version in page.versions + page.item_versions:
        # A first version "changes" every field it has: it is the record's creation.
        version.changed_labels = "Created" if version.version == 1 else labels.fields(version.changed_fields)
    page.persons = _persons(record) if "persons_involved" in visible else []
    page.reviews = list(record.reviews.select_related("reviewer").order_by("created_at", "id"))
    conflict_q = Q(record_type=record_type, record_id=record.pk)
    if item_ids:
        conflict_q |= Q(record_type="audit_item", record_id__in=item_ids)
    page.conflicts = list(Conflict.objects.filter(conflict_q, resolved_at__isnull=True)
                          .select_related("user", "device").order_by("created_at"))
    own_photos = list(record.photos) if "photos" in visible else []
    page.photos = _photos(own_photos, [(item, item.visible_photos) for item in page.items])
    page.map_data = _map_data(record, page.items)
    if personal:
        access_log_records(user=user, action="consultation", record_type=record_type, record_ids=[record.pk],
                           details={"view": "review_desk.record", "fields": sorted(personal)})
    return page


_label = labels.choice


def _persons(record) -> list[list[tuple[str, Any]]]:
    """Each person involved as (label, value) pairs; a person stored as plain text is one
    pair with no label."""
    people = []
    for person in getattr(record, "persons_involved", None) or []:
        if isinstance(person, dict):
            people.append([(labels.person_key(key), value) for key, value in person.items()])
        else:
            people.append([("", person)])
    return people


def _when(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%-d %b %Y %H:%M") if value else "—"


def _record_fields(record_type: str, record, visible: frozenset[str]) -> list[tuple[str, Any]]:
    """(label, value) pairs for the record's own fields; withheld ones say so."""
    def shown(name: str, value: Any) -> Any:
        return value if name in visible else WITHHELD

    rows: list[tuple[str, Any]] = []
    if record_type == "observation":
        rows += [
            ("Qualifier", _label(Qualifier, record.qualifier)),
            ("Incident type", _label(IncidentType, record.incident_type)),
            ("Observed at", _when(record.observed_at)),
            ("Description", shown("description", record.description or "—")),
            ("Action taken", ", ".join(_label(ActionTaken, a) for a in record.action_taken) or "—"),
        ]
    else:
        rows += [
            ("Title", record.title or "—"),
            ("Started at", _when(record.started_at)),
            ("Finished at", _when(record.finished_at)),
            ("Notes", record.notes or "—"),
        ]
    rows += [
        ("Location", f"{record.location.y:.6f}, {record.location.x:.6f}"),
        ("Accuracy", f"{record.accuracy_m:g} m" if record.accuracy_m is not None else "—"),
        ("Fix source", _label(FixSource, record.fix_source)),
        ("Area", record.area.name if record.area else "Outside every area"),
    ]
    return rows


def _photos(own: list[str], items: list[tuple[Any, list[str]]]) -> list[dict]:
    """Each photo named by the record or its items, and whether it has arrived yet."""
    named = [(sha, None) for sha in own] + [(sha, item) for item, shas in items for sha in shas]
    stored = {
        sha: bool(thumb)
        for sha, thumb in Attachment.objects.filter(sha256__in={sha for sha, _ in named})
        .values_list("sha256", "thumbnail")
    } if named else {}
    return [
        {"sha256": sha, "arrived": sha in stored, "has_thumbnail": stored.get(sha, False),
         "item": item}
        for sha, item in named
    ]


def _geojson(geom) -> dict | None:
    return json.loads(geom.geojson) if geom is not None else None


def _map_data(record, items: list) -> dict:
    features = [{"type": "Feature", "geometry": _geojson(record.location),
                 "properties": {"kind": "record", "label": "This record", "accuracy_m": record.accuracy_m}}]
    route = getattr(record, "route", None)
    if route is not None:
        features.append({"type": "Feature", "geometry": _geojson(route),
                         "properties": {"kind": "route", "label": "Route"}})
    for number, item in enumerate(items, start=1):
        features.append({"type": "Feature", "geometry": _geojson(item.location),
                         "properties": {"kind": "item",
                                        "label": f"{number}. {item.issue_label}"
                                                 + (f" (grade {item.grade})" if item.grade else "")}})
    if record.area is not None:
        features.append({"type": "Feature", "geometry": _geojson(record.area.geom),
                         "properties": {"kind": "area", "label": record.area.name}})
    return {"type": "FeatureCollection", "features": features}


def photo_in_scope(user, record_type: str, record_id, sha256: str) -> Attachment | None:
    """The stored photo, if the record is in scope, names it (itself or through an item)
    and its photos are fields this user may see."""
    record = record_in_scope(user, record_type, record_id)
    if record is None:
        return None
    named = "photos" in visible_fields_of(user, record_type, record) and sha256 in record.photos
    if not named and record_type == "street_audit":
        named = any(
            "photos" in visible_fields_of(user, "audit_item", item)
            for item in AuditItem.objects.filter(street_audit_id=record.pk, photos__contains=[sha256])
        )
    if not named:
        return None
    return Attachment.objects.filter(sha256=sha256).first()


def photo_consulted(user, record_type: str, record_id, sha256: str, *, size: str = "full") -> None:
    """A photo of a person is personal data, a thumbnail as much as the full size: log each
    one handed over (s.62). The record page's own row says the page was seen; this one says
    the picture left the server, which a page served from a browser's cache never does."""
    if "photos" in permissions.PERSONAL_FIELDS.get(record_type, frozenset()):
        access_log_records(user=user, action="consultation", record_type=record_type, record_ids=[record_id],
                           details={"view": "review_desk.photo" if size == "full" else "review_desk.photo_thumb",
                                    "photo": sha256})


# --- conflicts -------------------------------------------------------------------------------

def conflicts_in_scope(user) -> QuerySet[Conflict]:
    """Conflicts on records this user reviews (audit items count with their audit's area)."""
    scope = review_scope(user)
    q = Q(pk__in=[])
    for type_name, model in SCOPED.items():
        q |= Q(record_type=type_name, record_id__in=model.objects.filter(scope).values("id"))
    return Conflict.objects.filter(q)


def conflict_list_page(user, *, show: str = "open", page_number: Any = 1) -> Page:
    qs = conflicts_in_scope(user).select_related("user", "device", "resolved_by")
    if show == "open":
        qs = qs.filter(resolved_at__isnull=True)
    elif show == "resolved":
        qs = qs.filter(resolved_at__isnull=False)
    page = Paginator(qs.order_by("-created_at", "id"), PAGE_SIZE).get_page(page_number)
    conflicts = list(page.object_list)
    parents = dict(
        AuditItem.objects.filter(pk__in=[c.record_id for c in conflicts if c.record_type == "audit_item"])
        .values_list("id", "street_audit_id")
    )
    for conflict in conflicts:
        conflict.page_type, conflict.page_id = record_page_of(conflict, parents)
        conflict.field_names = [labels.field(name) for name in conflict.fields]
        conflict.type_label = labels.record_type(conflict.record_type)
    page.object_list = conflicts
    return page


def record_page_of(conflict: Conflict, parents: dict) -> tuple[str | None, Any]:
    """Which record page shows a conflict's record: an item's is its audit's."""
    if conflict.record_type in REVIEWED:
        return conflict.record_type, conflict.record_id
    parent = parents.get(conflict.record_id)
    return ("street_audit", parent) if parent else (None, None)


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _conflict_value(name: str, value: Any) -> Any:
    """A side's value as a supervisor reads it: codes named, the delete flag in words."""
    if name == "_deleted":
        return {True: "Deleted", False: "Kept"}.get(value, value) if isinstance(value, bool) else value
    return labels.value(name, value)


@dataclass
class ConflictPage:
    conflict: Conflict
    record: Any
    rows: list[dict]
    page_type: str | None
    page_id: Any


def conflict_in_scope(user, conflict_id) -> Conflict | None:
    return conflicts_in_scope(user).select_related("user", "device", "resolved_by").filter(pk=conflict_id).first()


def conflict_page(user, conflict: Conflict) -> ConflictPage:
    """A conflict (from `conflict_in_scope`) with both values of each field side by side;
    values of personal fields are shown (and logged as a consultation) only where the
    user may see them."""
    model = SCOPED[conflict.record_type]
    record = model.objects.filter(pk=conflict.record_id).first()
    visible = visible_fields_of(user, conflict.record_type, record) | {"_deleted"}
    chosen = ((conflict.resolution or {}).get("choices") or {}) if conflict.resolved_at else {}
    rows = []
    for name, values in conflict.fields.items():
        shown = name in visible
        values = values if isinstance(values, dict) else {}
        rows.append({
            "name": name,
            "label": labels.field(name),
            "shown": shown,
            "device": _pretty(_conflict_value(name, values.get("device"))) if shown else WITHHELD,
            "server": _pretty(_conflict_value(name, values.get("server"))) if shown else WITHHELD,
            # Fields a resolution did not name kept the server's value.
            "chosen": labels.side(chosen.get(name, "server")) if conflict.resolved_at else None,
        })
    personal = permissions.PERSONAL_FIELDS.get(conflict.record_type, frozenset()) & visible & set(conflict.fields)
    parents = {record.pk: record.street_audit_id} if conflict.record_type == "audit_item" and record else {}
    page_type, page_id = record_page_of(conflict, parents)
    conflict.type_label = labels.record_type(conflict.record_type)
    if personal:
        access_log_records(user=user, action="consultation", record_type=conflict.record_type,
                           record_ids=[conflict.record_id],
                           details={"view": "review_desk.conflict", "conflict": str(conflict.pk),
                                    "fields": sorted(personal)})
    return ConflictPage(conflict=conflict, record=record, rows=rows, page_type=page_type, page_id=page_id)


# --- quarantine ------------------------------------------------------------------------------

def quarantine_in_scope(user, among: Q | None = None) -> QuerySet[QuarantinedMutation]:
    """Mutations of the staff this user supervises that the server refused and kept, placed
    as a record would be: where the record they name lies, else where their own location
    points; shown when the user reviews that area, or when it lies outside every area (as
    the records of their teams' staff there are). A person in two teams is seen by each
    team's supervisor only in that team's areas."""
    if not desk_allowed(user):
        return QuarantinedMutation.objects.none()
    # `among` narrows the candidates before each is placed (one item, the open ones): placing
    # reads every candidate's payload.
    candidates = list(QuarantinedMutation.objects.filter(user_id__in=permissions.supervised_user_ids(user))
                      .filter(among or Q()).values_list("pk", "record_type", "record_id", "payload"))
    places = _quarantine_places(candidates)
    areas = permissions.area_ids_with(user, permissions.REVIEW_AREA)
    return QuarantinedMutation.objects.filter(
        pk__in=[pk for pk, place in places.items() if place is None or place in areas])


def _stored_area(record_type: str, record_ids: list[uuid.UUID]) -> dict[uuid.UUID, int | None]:
    """The area of each stored record (an audit item: its audit's)."""
    if record_type == "audit_item":
        return dict(AuditItem.objects.filter(pk__in=record_ids).values_list("pk", "street_audit__area_id"))
    model = REVIEWED.get(record_type)
    return dict(model.objects.filter(pk__in=record_ids).values_list("pk", "area_id")) if model else {}


def _payload_point(payload: Any) -> tuple[float, float] | None:
    """The [lon, lat] a kept mutation's data names, if it names a usable one."""
    data = payload.get("data") if isinstance(payload, dict) else None
    location = data.get("location") if isinstance(data, dict) else None
    coordinates = location.get("coordinates") if isinstance(location, dict) else None
    if (isinstance(coordinates, list) and len(coordinates) == 2
            and all(isinstance(c, int | float) and not isinstance(c, bool) for c in coordinates)
            and -180 <= coordinates[0] <= 180 and -90 <= coordinates[1] <= 90):
        return float(coordinates[0]), float(coordinates[1])
    return None


def _quarantine_places(candidates: list[tuple]) -> dict[int, int | None]:
    """Each kept mutation's area: the stored record's, else its payload point's (one query
    per record type and one for all points)."""
    wanted: dict[str, list[uuid.UUID]] = {}
    for _, record_type, record_id, _ in candidates:
        parsed = _uuid_or_none(record_id)
        if parsed is not None:
            wanted.setdefault(record_type, []).append(parsed)
    stored = {(t, rid): area for t, ids in wanted.items() for rid, area in _stored_area(t, ids).items()}
    places: dict[int, int | None] = {}
    to_locate: list[tuple[int, tuple[float, float]]] = []
    for pk, record_type, record_id, payload in candidates:
        key = (record_type, _uuid_or_none(record_id))
        if key in stored:
            places[pk] = stored[key]
        elif (point := _payload_point(payload)) is not None:
            to_locate.append((pk, point))
        else:
            places[pk] = None
    if to_locate:
        located = registered_type("observation").policy.locate([point for _, point in to_locate])
        places.update({pk: area for (pk, _), area in zip(to_locate, located, strict=True)})
    return places


def _personal_in_payload(item: QuarantinedMutation) -> frozenset[str]:
    """Personal fields carrying a value in a kept mutation's data (any type's, when the
    type itself was not understood)."""
    data = item.payload.get("data") if isinstance(item.payload, dict) else None
    if not isinstance(data, dict):
        return frozenset()
    personal = permissions.PERSONAL_FIELDS.get(item.record_type, ALL_PERSONAL if not registered_type(item.record_type)
                                               else frozenset())
    return frozenset(name for name in personal if data.get(name) not in (None, "", [], {}))


def payload_redacted(item: QuarantinedMutation) -> str:
    """The raw payload as it arrived, with personal values replaced: the list shows no
    personal data (and so logs none); the item's own page shows it all."""
    personal = _personal_in_payload(item)
    payload = item.payload
    if personal:
        payload = {**payload, "data": {k: (WITHHELD if k in personal else v) for k, v in payload["data"].items()}}
    return _pretty(payload)


def quarantine_list_page(user, *, show: str = "open", page_number: Any = 1) -> Page:
    among = {"open": Q(resolved_at__isnull=True), "resolved": Q(resolved_at__isnull=False)}.get(show)
    qs = quarantine_in_scope(user, among).select_related("user", "device", "resolved_by")
    page = Paginator(qs.order_by("-created_at", "id"), PAGE_SIZE).get_page(page_number)
    items = list(page.object_list)
    for item in items:
        item.error_rows = _error_rows(item.errors)
        _quarantine_labels(item)
        item.payload_text = payload_redacted(item)
        item.withheld = bool(_personal_in_payload(item))
    page.object_list = items
    _quarantine_list_consulted(user, items)
    return page


def _quarantine_list_consulted(user, items: list[QuarantinedMutation]) -> None:
    """The list shows each kept payload as it arrived, personal fields withheld. What else
    a refused mutation holds is whatever a handheld sent (unknown fields, free text in the
    wrong place), so showing it is logged as a consultation of the records it names."""
    if not items:
        return
    by_type: dict[str, list[uuid.UUID]] = {}
    for item in items:
        record_id = _uuid_or_none(item.record_id)
        by_type.setdefault(item.record_type or "unknown", []).extend([record_id] if record_id else [])
    for record_type, record_ids in by_type.items():
        access_log_records(user=user, action="consultation", record_type=record_type, record_ids=record_ids,
                           details={"view": "review_desk.quarantine_list",
                                    "quarantine": [item.pk for item in items
                                                   if (item.record_type or "unknown") == record_type]})


def _error_rows(errors: Any) -> list[dict]:
    """Per-field errors as (field, code, message) rows, whatever shape was stored."""
    rows = []
    if isinstance(errors, dict):
        for name, problems in errors.items():
            for problem in problems if isinstance(problems, list) else [problems]:
                if isinstance(problem, dict):
                    code = str(problem.get("code", ""))
                    rows.append({"field": name, "code": code, "message": problem.get("message", "")})
                else:
                    rows.append({"field": name, "code": "", "message": str(problem)})
    elif errors:
        rows.append({"field": "", "code": "", "message": _pretty(errors)})
    for row in rows:
        row["field_label"] = labels.field(row["field"])
        row["code_label"] = labels.error_code(row["code"])
        # The server's messages name fields by their keys ("… is not an allowed incident_type").
        if row["field"] in labels.FIELDS and isinstance(row["message"], str):
            row["message"] = row["message"].replace(row["field"], row["field_label"].lower())
    return rows


def _quarantine_labels(item: QuarantinedMutation) -> None:
    item.type_label = labels.record_type(item.record_type)
    item.op_label = labels.op(item.op)
    item.code_label = labels.refusal(item.code)


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def quarantine_item_in_scope(user, item_id: int) -> QuarantinedMutation | None:
    return quarantine_in_scope(user, Q(pk=item_id)).select_related("user", "device", "resolved_by").first()


def quarantine_item_page(user, item: QuarantinedMutation) -> QuarantinedMutation:
    """One kept mutation (from `quarantine_item_in_scope`), payload in full; personal
    values in it are logged as consulted."""
    item.error_rows = _error_rows(item.errors)
    _quarantine_labels(item)
    item.payload_text = _pretty(item.payload)
    personal = _personal_in_payload(item)
    if personal:
        record_id = _uuid_or_none(item.record_id)
        access_log_records(user=user, action="consultation", record_type=item.record_type or "unknown",
                           record_ids=[record_id] if record_id else [],
                           details={"view": "review_desk.quarantine", "quarantine": item.pk,
                                    "fields": sorted(personal)})
    return item


# --- devices -----------------------------------------------------------------------------------

@dataclass
class DeviceRow:
    device: Device
    missing_photos: int
    open_conflicts: int
    open_quarantine: int

    @property
    def can_revoke(self) -> bool:
        return self.device.revoked_at is None


def team_devices(user) -> list[DeviceRow]:
    """The devices of the staff this user supervises (and their own), with their sync
    health; a fixed number of queries however many devices there are."""
    if not desk_allowed(user):
        return []
    devices = devices_visible_to(user)
    ids = [d.pk for d in devices]
    conflicts = dict(Conflict.objects.filter(device_id__in=ids, resolved_at__isnull=True)
                     .values_list("device_id").annotate(n=Count("id")).values_list("device_id", "n"))
    quarantined = dict(QuarantinedMutation.objects.filter(device_id__in=ids, resolved_at__isnull=True)
                       .values_list("device_id").annotate(n=Count("id")).values_list("device_id", "n"))
    missing = missing_attachments(ids) if ids else []
    by_type: dict[str, set] = {}
    for photo in missing:
        by_type.setdefault(photo["type"], set()).add(photo["id"])
    record_device: dict[tuple[str, str], Any] = {}
    for type_name, record_ids in by_type.items():
        rtype = registered_type(type_name)
        for pk, device_id in rtype.model.objects.filter(pk__in=record_ids).values_list("pk", "device_id"):
            record_device[(type_name, str(pk))] = device_id
    missing_by_device = Counter(record_device.get((p["type"], p["id"])) for p in missing)
    rows = [
        DeviceRow(device=d, missing_photos=missing_by_device.get(d.pk, 0), open_conflicts=conflicts.get(d.pk, 0),
                  open_quarantine=quarantined.get(d.pk, 0))
        for d in devices
    ]
    rows.sort(key=lambda r: (r.device.revoked_at is not None, r.device.user.username, r.device.label))
    return rows


def device_in_scope(user, device_id) -> Device | None:
    return next((d for d in devices_visible_to(user) if d.pk == device_id), None) if desk_allowed(user) else None

