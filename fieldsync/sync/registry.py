"""Record types registered by the domain: the engine's only knowledge of what it syncs.

A registration names the model, its wire fields and a policy object that answers the
domain questions (who may write where, which scope keys a record lives under, what a
user may see). Adding a record type is a registration, not a change to the engine.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.db import models

from .fields import FieldSpec

Row = dict[str, Any]


class RecordPolicy(Protocol):
    """The domain's answers for one record type. `row` is a dict of the record's current
    column values (wire fields by name plus `id`, `version`, `deleted_at` and the type's
    `server_columns`); a pull page's rows carry only the engine's columns and the server
    columns (rows.VIEW_COLUMNS), which is all that scope, visibility and the server's view
    may depend on."""

    def form(self, version: int | None) -> tuple[int, int, dict[str, Sequence[str]]] | None:
        """(form id, form version, code lists) for a form version (None: current), or None
        if that version does not exist."""

    def form_version_of(self, form_id: int) -> int: ...

    def locate(self, points: Sequence[tuple[float, float]]) -> list[Any]:
        """The server-derived placement (e.g. area id) of each point, in one query."""

    def new_row_columns(self, *, user, device, placement: Any) -> Row:
        """Server-owned columns of a record a user creates (author, organisation…)."""

    def placement_columns(self, placement: Any) -> Row: ...

    def can_create(self, user, placement: Any) -> bool: ...

    def can_edit(self, user, row: Row) -> bool: ...

    def can_move_to(self, user, row: Row, placement: Any) -> bool: ...

    def prepare(self, user) -> None:
        """Optional: read now what deciding a push of `user` will ask of the database
        (their rights, the current form). Deciding runs while statements sent ahead of it
        are in flight, and any read of its own waits for all of them first, so a batch of
        plain creates should need none. Rarer paths (a conflict's record view, an audit
        item's lock) still read, correctly, without the overlap."""

    def is_locked(self, row: Row) -> bool:
        """True when field edits must become conflicts (e.g. approved by review)."""

    def after_edit(self, row: Row) -> Row:
        """Server columns that change when fields are edited (e.g. review state)."""

    def scope_keys(self, row: Row) -> Iterable[str]: ...

    def device_scope(self, user) -> dict[str, bool]:
        """Scope keys a user's device follows, each mapped to whether the sync window
        applies to it."""

    def in_device_scope(self, user, row: Row, window_start) -> bool: ...

    def visible_fields(self, user, row: Row) -> frozenset[str]: ...

    @property
    def personal_fields(self) -> frozenset[str]:
        """Fields holding personal data: a pull page showing any of them is a consultation."""

    def enrich(self, rows: list[Row]) -> None:
        """Add to rows, in one go, what `server_view` shows besides their columns (author
        name, latest review note…)."""

    def server_view(self, row: Row) -> dict[str, Any]:
        """Server-owned fields sent with an upsert (area, author, review…)."""

    def record_consulted(self, *, user, device, record_ids: list, purpose: str = "") -> None:
        """Called inside the transaction of an answer (a pull page, a push answer, the sync
        status) with the records it hands over carrying personal values (s.62
        consultation); `purpose` says which answer, empty for a pull page."""

    def record_collected(self, *, user, device, action: str, record_ids: list) -> None:
        """Called inside the push transaction for the access log (s.62 collection and
        alteration)."""


@dataclass(frozen=True, eq=False)  # hashed by identity: one instance per type
class RecordType:
    name: str
    model: type[models.Model]
    fields: tuple[FieldSpec, ...]
    policy: RecordPolicy
    # Extra columns the engine reads and writes besides the wire fields.
    server_columns: tuple[str, ...] = ()
    # (data field, record type) of a parent the record depends on, if any.
    parent: tuple[str, str] | None = None
    # Fields merged as one: a location with its accuracy and fix source.
    location_group: tuple[str, ...] = ("location", "accuracy_m", "fix_source")
    # Wire fields the server owns and a client may never set.
    read_only: frozenset[str] = field(default_factory=frozenset)

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @property
    def field_map(self) -> dict[str, FieldSpec]:
        return {spec.name: spec for spec in self.fields}

    def json_schema(self, choices: dict[str, Sequence[str]]) -> dict:
        return {
            "type": "object",
            "additionalProperties": False,
            "required": [spec.name for spec in self.fields if spec.required],
            "properties": {spec.name: spec.json_schema(choices) for spec in self.fields},
        }


_registry: dict[str, RecordType] = {}


def register(record_type: RecordType) -> RecordType:
    _registry[record_type.name] = record_type
    return record_type


def get(name: str) -> RecordType | None:
    return _registry.get(name)


def all_types() -> list[RecordType]:
    return list(_registry.values())


class DevicePolicy(Protocol):
    """The domain's answers about devices and the people holding them."""

    def can_enrol(self, user) -> bool: ...

    def can_revoke(self, user, device) -> bool: ...

    def can_see_device(self, user, device) -> bool: ...

    def watched_user_ids(self, user) -> Iterable[Any]:
        """Users whose devices this user may watch (themselves, their teams…); narrows the
        query before `can_see_device` decides each device."""

    def describe_user(self, user) -> dict[str, Any]:
        """`{username, roles, organisation}` as sent at enrolment and in the manifest."""

    def areas(self, user) -> list[dict[str, Any]]:
        """The areas a user works in: `[{id, name, geometry}]`."""

    def device_logged(self, *, user, device, action: str) -> None:
        """Called inside the transaction of enrol and revoke, for the access log."""


_device_policy: list[DevicePolicy] = []


def set_device_policy(policy: DevicePolicy) -> None:
    _device_policy[:] = [policy]


def device_policy() -> DevicePolicy:
    if not _device_policy:
        raise RuntimeError("no device policy registered: is the domain app installed?")
    return _device_policy[0]
