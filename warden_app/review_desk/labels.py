"""What the desk calls things: a supervisor reads "Incident type" and "Street drinking", never
`incident_type` or `street_drinking`.

Code lists come from warden_app/choices.py (their TextChoices labels); field names, record
types, operations, refusal codes and token states are named here, once. Anything not listed
(a code a newer handheld sends, a field of a newer form version) is shown as it came, so the
desk never hides what a device sent.
"""
from __future__ import annotations

from typing import Any

from django.db.models import TextChoices

from fieldsync.sync.api import Conflict

from ..choices import ActionTaken, FixSource, Grade, IncidentType, IssueType, Qualifier, ReviewState

RECORD_TYPES = {"observation": "Observation", "street_audit": "Street audit", "audit_item": "Audit item"}

FIELDS = {
    "accuracy_m": "Accuracy (m)",
    "action_taken": "Action taken",
    "area_id": "Area",
    "author_id": "Author",
    "base_version": "Base version",
    "client_time": "Device clock",
    "description": "Description",
    "finished_at": "Finished at",
    "fix_source": "Fix source",
    "form": "Form",
    "form_version": "Form version",
    "grade": "Grade",
    "id": "Record id",
    "incident_type": "Incident type",
    "issue_type": "Issue",
    "location": "Location",
    "mutation": "The whole change",
    "mutation_id": "Change id",
    "notes": "Notes",
    "observed_at": "Observed at",
    "persons_involved": "Persons involved",
    "photos": "Photos",
    "qualifier": "Qualifier",
    "responsible_agency": "Responsible agency",
    "review_note": "Review note",
    "review_state": "Review state",
    "route": "Route",
    "started_at": "Started at",
    "street_audit": "Street audit",
    "title": "Title",
    "_deleted": "Delete the record",
}

# The keys a handheld writes for each person involved (demo and form default).
PERSON_KEYS = {"description": "Description", "approx_age": "Approximate age", "age": "Age",
               "gender": "Gender", "role": "Role"}

# Fields whose values are codes from a list, and the list.
CODED: dict[str, type[TextChoices]] = {
    "qualifier": Qualifier,
    "incident_type": IncidentType,
    "action_taken": ActionTaken,
    "issue_type": IssueType,
    "grade": Grade,
    "fix_source": FixSource,
    "review_state": ReviewState,
}

OPS = {"create": "New record", "update": "Change", "delete": "Deletion"}

# Why the server refused and kept a change (fieldsync/sync/push.py's `_reject` codes).
REFUSALS = {
    "validation_failed": "Not valid",
    "permission_denied": "Not allowed",
    "not_found": "Record not found",
    "id_exists": "Record id already used",
    "invalid_base_version": "Based on a version the server never had",
    "depends_on_rejected": "Depends on a refused record",
    "mutation_id_reused": "Change id reused",
    "invalid_mutation": "Malformed change",
    "too_deep": "Nested too deeply",
    "constraint_violation": "Refused by the database",
    "unknown_type": "Unknown record type",
    "unknown_op": "Unknown operation",
}

# The per-field reasons (the `code` of each error a refusal lists).
ERROR_CODES = {
    "required": "Missing",
    "null": "Empty",
    "wrong_type": "Wrong kind of value",
    "not_in_choices": "Not on the list",
    "invalid_choice": "Not on the list",
    "invalid": "Not valid",
    "invalid_character": "Contains a character not allowed",
    "invalid_geometry": "Not a usable location",
    "invalid_hash": "Not a photo reference",
    "invalid_uuid": "Not a valid id",
    "not_finite": "Not a number",
    "out_of_range": "Out of range",
    "too_large": "Too large",
    "too_small": "Too small",
    "too_long": "Too long",
    "too_old": "Too far in the past",
    "future_time": "In the future",
    "before_start": "Before the start",
    "unknown_field": "Not a field of this form",
    "unknown_form_version": "Unknown form version",
    "unknown_type": "Unknown record type",
    "unknown_op": "Unknown operation",
    "read_only": "Cannot be changed",
    "area_forbidden": "Outside the areas they may record in",
    "permission_denied": "Not allowed",
    "not_found": "Not found",
    "not_graded": "Not graded for this issue",
    "photo_unavailable": "Photo not available",
    "depends_on_rejected": "Depends on a refused record",
    "invalid_base_version": "Version the server never had",
    "mutation_id_reused": "Change id reused",
    "too_deep": "Nested too deeply",
    "constraint_violation": "Refused by the database",
    "id_exists": "Id already used",
}

SIDES = {"device": "Device value", "server": "Server value"}

TOKEN_STATES = {"active": "Active", "expired": "Expired", "revoked": "Revoked",
                "password_changed": "Ended by a password change"}


def _from(table: dict[str, str], key: Any, empty: str = "—") -> str:
    if key in (None, ""):
        return empty
    return table.get(key, str(key))


def record_type(name: str | None) -> str:
    return _from(RECORD_TYPES, name, "Unknown type")


def field(name: str | None) -> str:
    return _from(FIELDS, name, "The whole change")


def fields(names) -> str:
    return ", ".join(field(name) for name in names or [])


def person_key(name: str) -> str:
    return PERSON_KEYS.get(name, name.replace("_", " ").capitalize())


def op(name: str | None) -> str:
    return _from(OPS, name, "Unknown operation")


def refusal(code: str | None) -> str:
    return _from(REFUSALS, code)


def error_code(code: str | None) -> str:
    return _from(ERROR_CODES, code, "")


def side(name: str | None) -> str:
    return _from(SIDES, name)


def token_state(name: str | None) -> str:
    return _from(TOKEN_STATES, name)


def conflict_reason(reason: str) -> str:
    return _from(dict(Conflict.Reason.choices), reason)


def choice(choices: type[TextChoices], value: Any) -> str:
    """A code's label; an unknown code as it came (a newer form version may add codes)."""
    if value in (None, ""):
        return ""
    try:
        return choices(value).label
    except ValueError:
        return str(value)


def value(name: str, raw: Any) -> Any:
    """A field's value with its codes named: a coded field's code (or list of codes) becomes
    its label; anything else is returned as it is."""
    choices = CODED.get(name)
    if choices is None:
        return raw
    if isinstance(raw, list):
        return [choice(choices, item) if isinstance(item, str) else item for item in raw]
    if isinstance(raw, str):
        return choice(choices, raw)
    return raw
