"""Registers observations, street audits and audit items with the sync engine.

This is the whole of the engine's knowledge of the domain: the wire fields of each type,
and a policy answering who may write where, which scope keys a record lives under and
what a user may see. Scope keys: `a:<area id>` (records in an area, sync window applies),
`u:<user id>` (a user's own records), `t:<user id>` (a user's out-of-area records, followed
by the supervisors of their teams).
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from functools import cache, lru_cache
from typing import Any

import orjson
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from fieldsync import db
from fieldsync.sync.api import FieldSpec, RecordType, Row, register_type, set_device_policy

from . import permissions
from .choices import GRADED_ISSUE_TYPES, ActionTaken, FixSource, Grade, IncidentType, Qualifier, ReviewState
from .models import AuditItem, Observation, StreetAudit
from .rights import rights_of
from .roles import Role, roles_of

SERVER_OWNED = frozenset({"version", "area", "author", "organisation", "server_time", "review", "device"})

LOCATION_FIELDS = (
    FieldSpec("location", "point", required=True, nullable=False, description="GeoJSON Point, WGS84"),
    FieldSpec("accuracy_m", "number", minimum=0, maximum=100_000, description="GPS accuracy, metres"),
    FieldSpec("fix_source", "text", choices=FixSource.values, nullable=False, default=FixSource.GPS.value),
)
PHOTOS = FieldSpec("photos", "photos", nullable=False, default=None, description="sha256 of each photo")
FORM = FieldSpec("form_version", "integer", minimum=1, description="form version the record was made with")


# How long a process trusts its idea of the newest form version. A version published in
# this process is seen at once (signals below); other processes see it within this time.
LATEST_FORM_TTL_S = 5.0
_latest: dict[str, tuple[float, int | None]] = {}


def _latest_version(record_type: str) -> int | None:
    now = time.monotonic()
    cached = _latest.get(record_type)
    if cached is not None and now - cached[0] < LATEST_FORM_TTL_S:
        return cached[1]
    from .models import FormDefinition

    version = (
        FormDefinition.objects.filter(record_type=record_type)
        .order_by("-version").values_list("version", flat=True).first()
    )
    _latest[record_type] = (now, version)
    return version


@lru_cache(maxsize=256)
def _form(record_type: str, version: int | None) -> tuple[int, int, dict[str, Sequence[str]]] | None:
    """(form id, version, code lists) of a form version (None: the newest, as cached until
    `forms_changed`); forms never change once published."""
    from .models import FormDefinition

    forms = FormDefinition.objects.filter(record_type=record_type)
    form = forms.filter(version=version).first() if version is not None else forms.order_by("-version").first()
    if form is None:
        return None
    definition = form.definition or {}
    choices: dict[str, Sequence[str]] = {}
    checklist = definition.get("checklist") or []
    if checklist:
        choices["issue_type"] = tuple(item["code"] for item in checklist)
        choices["graded_issue_type"] = tuple(item["code"] for item in checklist if item.get("graded"))
    for key in ("incident_types", "qualifiers", "action_taken"):
        if key in definition:
            choices[key] = tuple(definition[key])
    return form.pk, form.version, choices


def forms_changed() -> None:
    """Forget cached forms (a form version is published or the test database is reset)."""
    _form.cache_clear()
    _form_version.cache_clear()
    _latest.clear()


def _form_saved(sender, **kwargs) -> None:
    # After the commit, so no request re-caches the old state in between.
    transaction.on_commit(forms_changed)


@lru_cache(maxsize=256)
def _form_version(form_id: int) -> int:
    from .models import FormDefinition

    return FormDefinition.objects.values_list("version", flat=True).get(pk=form_id)


@cache
def _enrich_sql(review_fk: str) -> str:
    """By record id: its author's username and, if the type is reviewed (`review_fk`, the
    review's column naming it), the note and time of its latest decision."""
    from .models import Review, User

    users = User._meta.db_table
    if not review_fk:
        return (f"SELECT r.id, u.username, NULL, NULL FROM unnest(%s::uuid[], %s::bigint[]) AS r(id, author) "
                f"LEFT JOIN {users} u ON u.id = r.author")
    column = Review._meta.get_field(review_fk).column
    return f"""
SELECT r.id, u.username, d.note, d.created_at
FROM unnest(%s::uuid[], %s::bigint[]) AS r(id, author)
LEFT JOIN {users} u ON u.id = r.author
LEFT JOIN LATERAL (SELECT note, created_at FROM {Review._meta.db_table}
                   WHERE {column} = r.id AND decision <> 'comment'
                   ORDER BY created_at DESC LIMIT 1) d ON true
"""


class FieldRecordPolicy:
    """Shared answers for the three record types."""

    form_type = "observation"
    review_state_column = True
    record_type = ""
    review_fk = ""

    @property
    def personal_fields(self) -> frozenset[str]:
        return permissions.PERSONAL_FIELDS.get(self.record_type, frozenset())

    def enrich(self, rows: list[Row]) -> None:
        """Add what a pull shows besides the row: author username, latest review note."""
        if not rows:
            return
        # One prepared statement for both, on the engine's cursor: a page names a thousand
        # records, whose ids it binds as one array where the ORM would convert and quote
        # each in Python.
        with db.cursor() as cursor:
            cursor.execute(_enrich_sql(self.review_fk), [db.uuid_array(r["id"] for r in rows),
                                                         [r["author_id"] for r in rows]])
            found = {rid: rest for rid, *rest in cursor.fetchall()}
        for row in rows:
            username, note, at = found.get(row["id"], (None, None, None))
            row["author_username"] = username
            if self.review_fk:
                row["review_note"], row["reviewed_at"] = note or "", at.isoformat() if at else None

    # --- forms and placement ------------------------------------------------------------

    def form(self, version):
        """A named version (cached for good: published forms never change), or the newest
        one when `version` is None (re-read every few seconds, so a version published by
        another process reaches the manifest and unversioned records soon)."""
        if version is None:
            version = _latest_version(self.form_type)
            if version is None:
                return None
        found = _form(self.form_type, version)
        if found is None:
            _form.cache_clear()  # a version published since we cached: look again once
            found = _form(self.form_type, version)
        return found

    def form_version_of(self, form_id: int) -> int:
        return _form_version(form_id)

    def prepare(self, user) -> None:
        rights_of(user)
        self.form(None)

    def locate(self, points: Sequence[tuple[float, float]]) -> list[int | None]:
        # The engine's cursor binds the two arrays server-side; Django's would quote a
        # push's 1,000 coordinates into the SQL text in Python first. The rule is inlined
        # into this one plan (migration 0007), not called once per point.
        with db.cursor() as cursor:
            cursor.execute(
                "SELECT a.id FROM unnest(%s::float8[], %s::float8[]) WITH ORDINALITY AS p(lon, lat, n) "
                "LEFT JOIN LATERAL warden_area_at(ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326)) AS a(id) ON true "
                "ORDER BY p.n",
                [[p[0] for p in points], [p[1] for p in points]],
            )
            return [row[0] for row in cursor.fetchall()]

    def placement_columns(self, placement):
        return {"area_id": placement}

    def new_row_columns(self, *, user, device, placement):
        columns = {
            "author_id": user.pk,
            "organisation_id": user.organisation_id,
            "device_id": device.pk if device else None,
            "area_id": placement,
        }
        if self.review_state_column:
            columns["review_state"] = ReviewState.SUBMITTED.value
        return columns

    # --- permissions ----------------------------------------------------------------------

    def can_create(self, user, placement) -> bool:
        return user.organisation_id is not None and permissions.can_record_in(user, placement)

    def can_edit(self, user, row: Row) -> bool:
        return permissions.can_edit_record(user, _RowView(row))

    def can_move_to(self, user, row: Row, placement) -> bool:
        return permissions.can_record_in(user, placement) or (
            placement is not None and permissions.can_review(user, placement)
        )

    def is_locked(self, row: Row) -> bool:
        return row.get("review_state") == ReviewState.APPROVED.value

    def after_edit(self, row: Row) -> Row:
        if row.get("review_state") in (ReviewState.HAS_ISSUES.value, ReviewState.REJECTED.value):
            return {"review_state": ReviewState.EDITED.value}
        return {}

    def validate(self, row: Row, choices: dict) -> dict[str, list]:
        return {}

    # --- scope and visibility -------------------------------------------------------------

    def scope_keys(self, row: Row) -> Iterable[str]:
        keys = [f"u:{row['author_id']}"]
        keys.append(f"a:{row['area_id']}" if row.get("area_id") is not None else f"t:{row['author_id']}")
        return keys

    def device_scope(self, user) -> dict[str, bool]:
        return device_scope(user)

    def in_device_scope(self, user, row: Row, window_start) -> bool:
        own_open = row["author_id"] == user.pk and row.get("review_state") != ReviewState.APPROVED.value
        if own_open:
            return True
        if row["updated_at"] < window_start:
            return False
        # The rest depends on the place alone (and the author, outside every area); a pull
        # page asks it for a thousand records that share a handful of places.
        area_id = row.get("area_id")
        key = ("device_scope", area_id, row["author_id"] if area_id is None else None)
        memo = permissions.request_memo(user)
        if key not in memo:
            if area_id is None:
                memo[key] = row["author_id"] in permissions.supervised_user_ids(user)
            else:
                memo[key] = permissions.can_record_in(user, area_id) or permissions.can_review(user, area_id)
        return memo[key]

    def visible_fields(self, user, row: Row) -> frozenset[str]:
        # Memoised per request where redaction is decided (permissions.personal_fields_for).
        return permissions.visible_fields(user, self.record_type, _RowView(row), _ALL_FIELDS[self.record_type])

    def server_view(self, row: Row) -> dict[str, Any]:
        view = {
            "area": row.get("area_id"),
            "author": row.get("author_username") or row.get("author_id"),
            "organisation": row.get("organisation_id"),
            "server_time": row["updated_at"].isoformat(),
        }
        if self.review_state_column:
            view["review"] = {
                "state": row.get("review_state"),
                "note": row.get("review_note", ""),
                "reviewed_at": row.get("reviewed_at"),
            }
        return view

    def record_consulted(self, *, user, device, record_ids: list, purpose: str = "") -> None:
        """An answer of the sync API handed these records over with personal fields in them
        (s.62 consultation)."""
        from .services.access_log import access_log_synced

        access_log_synced(user=user, action="consultation", record_type=self.record_type, record_ids=record_ids,
                          device_id=device.pk if device else None,
                          purpose=purpose or "field sync to the user's handheld")

    def record_collected(self, *, user, device, action: str, record_ids: list) -> None:
        from .services.access_log import access_log_synced

        access_log_synced(user=user, action=action, record_type=self.record_type, record_ids=record_ids,
                          device_id=device.pk if device else None)


class _RowView:
    """Lets the permission functions read a row dict like a model instance."""

    __slots__ = ("area_id", "author_id", "organisation_id", "review_state")

    def __init__(self, row: Row):
        self.author_id = row.get("author_id")
        self.area_id = row.get("area_id")
        self.organisation_id = row.get("organisation_id")
        self.review_state = row.get("review_state")


def device_scope(user) -> dict[str, bool]:
    """The keys a user's handheld follows: their areas (windowed), their own records, and
    for supervisors the out-of-area records of their teams."""
    keys: dict[str, bool] = {f"u:{user.pk}": False}
    area_ids = permissions.area_ids_with(user, permissions.RECORD_IN_AREA)
    if permissions.has_role(user, Role.SUPERVISOR):
        area_ids = area_ids | permissions.area_ids_with(user, permissions.REVIEW_AREA)
        for member in permissions.supervised_user_ids(user):
            keys[f"t:{member}"] = True
    if not (permissions.is_field_staff(user) or permissions.has_role(user, Role.SUPERVISOR)):
        area_ids = frozenset()
    for area_id in area_ids:
        keys[f"a:{area_id}"] = True
    return keys


class ObservationPolicy(FieldRecordPolicy):
    form_type = "observation"
    record_type = "observation"
    review_fk = "observation_id"


class StreetAuditPolicy(FieldRecordPolicy):
    form_type = "street_audit"
    record_type = "street_audit"
    review_fk = "street_audit_id"

    def validate(self, row: Row, choices: dict) -> dict[str, list]:
        started, finished = row.get("started_at"), row.get("finished_at")
        if started and finished and finished < started:
            return {"finished_at": [{"code": "before_start", "message": "finished_at is before started_at"}]}
        return {}


class AuditItemPolicy(FieldRecordPolicy):
    form_type = "street_audit"
    record_type = "audit_item"
    review_state_column = False

    def validate(self, row: Row, choices: dict) -> dict[str, list]:
        # Forms may grade codes of their own; the national four are always graded (the
        # table's constraint says so too).
        graded = (*choices.get("graded_issue_type", ()), *GRADED_ISSUE_TYPES)
        if row.get("issue_type") in graded and not row.get("grade"):
            return {"grade": [{"code": "required", "message": f"{row['issue_type']} must be graded A-D"}]}
        if row.get("grade") and row.get("issue_type") not in graded:
            return {"grade": [{"code": "not_graded", "message": f"{row['issue_type']} is not graded"}]}
        return {}

    def is_locked(self, row: Row) -> bool:
        """Items are reviewed with their audit: an approved audit locks its items."""
        state = (
            StreetAudit.objects.filter(pk=row.get("street_audit")).values_list("review_state", flat=True).first()
        )
        return state == ReviewState.APPROVED.value

    def after_edit(self, row: Row) -> Row:
        return {}


_ALL_FIELDS: dict[str, frozenset[str]] = {}


def _register(name: str, model, fields: tuple[FieldSpec, ...], policy, server_columns, parent=None) -> None:
    _ALL_FIELDS[name] = frozenset(spec.name for spec in fields)
    register_type(
        RecordType(
            name=name, model=model, fields=fields, policy=policy, server_columns=server_columns,
            parent=parent, read_only=SERVER_OWNED,
        )
    )


_register(
    "observation",
    Observation,
    (
        FieldSpec("qualifier", "text", required=True, nullable=False, choices=Qualifier.values),
        FieldSpec("incident_type", "text", required=True, nullable=False, choices=IncidentType.values),
        FieldSpec("observed_at", "datetime", required=True, nullable=False),
        FieldSpec("description", "text", nullable=False, max_length=4000, default=""),
        FieldSpec("action_taken", "text_list", nullable=False, choices=ActionTaken.values, max_length=30),
        FieldSpec("persons_involved", "json_list", nullable=False,
                  description="[{description, name, approx_age}]: personal data"),
        *LOCATION_FIELDS,
        PHOTOS,
        FORM,
    ),
    ObservationPolicy(),
    ("author_id", "organisation_id", "device_id", "area_id", "review_state"),
)
_register(
    "street_audit",
    StreetAudit,
    (
        FieldSpec("title", "text", nullable=False, max_length=200, default=""),
        FieldSpec("started_at", "datetime", required=True, nullable=False),
        FieldSpec("finished_at", "datetime"),
        FieldSpec("route", "line"),
        FieldSpec("notes", "text", nullable=False, max_length=4000, default=""),
        *LOCATION_FIELDS,
        PHOTOS,
        FieldSpec("form_version", "integer", required=True, minimum=1),
    ),
    StreetAuditPolicy(),
    ("author_id", "organisation_id", "device_id", "area_id", "review_state"),
)
_register(
    "audit_item",
    AuditItem,
    (
        FieldSpec("street_audit", "uuid", required=True, nullable=False, column="street_audit_id"),
        FieldSpec("issue_type", "text", required=True, nullable=False, form_choices="issue_type", max_length=40),
        FieldSpec("grade", "text", choices=Grade.values),
        FieldSpec("responsible_agency", "text", nullable=False, max_length=120, default=""),
        FieldSpec("notes", "text", nullable=False, max_length=4000, default=""),
        *LOCATION_FIELDS,
        PHOTOS,
        FieldSpec("form_version", "integer", required=True, minimum=1),
    ),
    AuditItemPolicy(),
    ("author_id", "organisation_id", "device_id", "area_id"),
    parent=("street_audit", "street_audit"),
)


class WardenDevicePolicy:
    """Who may enrol, revoke and watch handhelds, and what a handheld is told about its user."""

    def can_enrol(self, user) -> bool:
        return permissions.can_enrol_device(user)

    def can_revoke(self, user, device) -> bool:
        return permissions.can_revoke_device(user, device)

    def can_see_device(self, user, device) -> bool:
        return device.user_id == user.pk or permissions.can_revoke_device(user, device)

    def watched_user_ids(self, user):
        if permissions.has_role(user, Role.ADMIN):
            from .models import User

            return User.objects.values_list("pk", flat=True)
        return {user.pk, *permissions.supervised_user_ids(user)}

    def describe_user(self, user) -> dict[str, Any]:
        org = user.organisation
        return {
            "username": user.get_username(),
            "roles": sorted(roles_of(user)),
            "organisation": {"id": org.pk, "name": org.name} if org else None,
        }

    def areas(self, user) -> list[dict[str, Any]]:
        from .models import Area

        ids = permissions.area_ids_with(user, permissions.RECORD_IN_AREA) | permissions.area_ids_with(
            user, permissions.REVIEW_AREA
        )
        return [
            {"id": area.pk, "name": area.name, "geometry": orjson.loads(area.geom.geojson)}
            for area in Area.objects.filter(pk__in=ids).order_by("pk")
        ]

    def device_logged(self, *, user, device, action: str) -> None:
        """Enrolment and revocation touch no record's personal data: nothing for s.62."""


set_device_policy(WardenDevicePolicy())


def _connect_form_signals() -> None:
    from .models import FormDefinition

    post_save.connect(_form_saved, sender=FormDefinition, dispatch_uid="fieldsync.forms_changed.save")
    post_delete.connect(_form_saved, sender=FormDefinition, dispatch_uid="fieldsync.forms_changed.delete")


_connect_form_signals()
