"""Push: apply a device's mutations exactly once, in order, each ending applied, merged,
conflict or rejected (or `duplicate` of an earlier answer).

The batch is decided in memory and written with a handful of set-based statements in one
transaction, after taking advisory locks on every mutation id and record id it touches:
concurrent pushes of the same mutations, or of edits to the same records, serialise on
those locks, so "decide, then write" sees a stable world. If writing fails for a reason
the decision could not foresee (a database constraint), the batch is replayed one
mutation per savepoint so that one bad mutation never blocks the others.
"""
from __future__ import annotations

import hashlib
import logging
import uuid
from collections import Counter, defaultdict
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import psycopg
from django.conf import settings
from django.db import DatabaseError, IntegrityError, OperationalError, transaction
from django.utils import timezone

from fieldsync import db, parsing
from fieldsync.errors import ApiError

from . import bodies, registry, rows
from .feed import feed_drop, feed_touch
from .fields import SHA256_RE, Context, Invalid, parse_time, to_wire
from .merge import merge_patch
from .models import MutationStatus
from .photo_access import photo_access
from .registry import RecordType, Row
from .shown import Consulted, record_view, wire_data

log = logging.getLogger(__name__)

# The engine's statements run on raw psycopg cursors, so both families of errors occur.
RETRYABLE = (
    OperationalError,
    psycopg.OperationalError,  # deadlock, serialization failure, a lost connection
    psycopg.errors.UniqueViolation,
)
# A create racing another user's create of the same id: after the retries, each mutation
# is decided alone so only the loser is refused. Anything else retryable (the database
# gone, still deadlocking) is a 503 the handheld retries as a whole.
RACING = (IntegrityError, psycopg.errors.IntegrityError)
REFUSED = (IntegrityError, DatabaseError, psycopg.errors.IntegrityError, psycopg.errors.DataError)

OPS = ("create", "update", "delete")
ENVELOPE_KEYS = {"mutation_id", "type", "op", "id", "base_version", "client_time", "data"}
DUPLICATE = "duplicate"
# The purpose logged when a push answer shows the server's version of a record (s.62).
CONFLICT_ANSWER = "push answer: the server's version of a record in conflict"
REJECTED = MutationStatus.REJECTED.value


def _err(code: str, message: str) -> list[dict[str, str]]:
    return [{"code": code, "message": message}]


@dataclass
class Mutation:
    index: int
    raw: Any
    payload_hash: str
    mutation_id: uuid.UUID | None = None
    rtype: RecordType | None = None
    op: str = ""
    record_id: uuid.UUID | None = None
    base_version: int | None = None
    client_time: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)
    envelope_errors: dict[str, list] = field(default_factory=dict)
    too_deep: bool = False

    @property
    def key(self) -> tuple[str, uuid.UUID]:
        return (self.rtype.name, self.record_id)


@dataclass
class RecordState:
    """A record as this batch sees it: loaded, then changed by its mutations in order."""

    rtype: RecordType
    row: Row | None
    in_db: bool
    old_keys: frozenset[str] = frozenset()
    created_here: bool = False
    rejected_create: bool = False
    dirty: bool = False
    versions: list[tuple[int, list[str], uuid.UUID, dict]] = field(default_factory=list)


def _too_deep_for_its_push(raw: Any) -> bool:
    """Past JSON_MAX_DEPTH for the body it came in (the mutation sits two levels down)."""
    return bodies.nests_deeper(raw, settings.JSON_MAX_DEPTH - 2)


def parse_mutation(index: int, raw: Any) -> Mutation:
    """Check a mutation's envelope; field-level problems are kept, not raised. A mutation
    nesting deeper than its push may (JSON_MAX_DEPTH) refuses the push as a whole (400
    too_deep, raised); one merely deeper than SYNC_MAX_MUTATION_DEPTH is kept, to be
    rejected alone. Depth costs one count of brackets in the text the payload hash is
    taken of anyway; only a mutation with more brackets than the limit is walked."""
    try:
        text = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        # orjson writes at most 254 levels, far past JSON_MAX_DEPTH (settings keep it so).
        if "recursion" in str(exc).lower() or _too_deep_for_its_push(raw):
            raise bodies.too_deep(settings.JSON_MAX_DEPTH) from None
        text = repr(raw).encode()
    m = Mutation(index=index, raw=raw, payload_hash=hashlib.sha256(text).hexdigest())
    if bodies.text_nests_deeper(text, raw, settings.SYNC_MAX_MUTATION_DEPTH):
        if _too_deep_for_its_push(raw):
            raise bodies.too_deep(settings.JSON_MAX_DEPTH)
        m.too_deep = True
    errors = m.envelope_errors
    if not isinstance(raw, dict):
        errors["mutation"] = _err("wrong_type", "each mutation must be an object")
        return m
    for key in raw.keys() - ENVELOPE_KEYS:
        errors[key] = _err("unknown_field", f"unknown mutation field {key!r}")
    m.mutation_id = parsing.as_uuid(raw["mutation_id"]) if isinstance(raw.get("mutation_id"), str) else None
    if m.mutation_id is None:
        errors["mutation_id"] = _err("invalid_uuid", "mutation_id must be a UUID")
    m.rtype = registry.get(raw.get("type")) if isinstance(raw.get("type"), str) else None
    if m.rtype is None:
        errors["type"] = _err("unknown_type", f"unknown record type {raw.get('type')!r}")
    m.op = raw.get("op") if raw.get("op") in OPS else ""
    if not m.op:
        errors["op"] = _err("unknown_op", "op must be create, update or delete")
    m.record_id = parsing.as_uuid(raw["id"]) if isinstance(raw.get("id"), str) else None
    if m.record_id is None:
        errors["id"] = _err("invalid_uuid", "id must be a UUID")
    base = raw.get("base_version")
    if base is not None and (isinstance(base, bool) or not isinstance(base, int) or base < 1):
        errors["base_version"] = _err("wrong_type", "base_version must be a positive integer or null")
    else:
        m.base_version = base
    if m.op in ("update", "delete") and base is None and "base_version" not in errors:
        errors["base_version"] = _err("required", f"{m.op} needs the base_version the device last saw")
    if raw.get("client_time") is not None:
        try:
            m.client_time = parse_time(raw["client_time"], "client_time")
        except Invalid as exc:
            errors["client_time"] = _err(exc.code, exc.message)
    data = raw.get("data", {})
    if not isinstance(data, dict):
        errors["data"] = _err("wrong_type", "data must be an object")
    else:
        m.data = data
    return m


class Batch:
    """Decides a push in memory; `write()` stores the decisions."""

    def __init__(self, *, user, device, mutations: list[Mutation]):
        self.user = user
        self.device = device
        self.mutations = mutations
        # The mutations whose envelope holds: only these name a record to load or decide.
        self.valid = [m for m in mutations if not m.envelope_errors]
        self.now = timezone.now()
        self.ctx_future = timedelta(seconds=settings.SYNC_MAX_CLOCK_SKEW_S)
        self.tolerance_m = settings.SYNC_LOCATION_TOLERANCE_M
        self.results: list[dict | None] = [None] * len(mutations)
        self.states: dict[tuple[str, uuid.UUID], RecordState] = {}
        self.receipts_new: list[tuple[Mutation, dict]] = []
        self.quarantine: list[tuple[Mutation, str, dict]] = []
        self.conflicts: list[dict] = []
        self.seen: dict[uuid.UUID, tuple[str, dict]] = {}
        self.previously_rejected: set[tuple[str, uuid.UUID]] = set()
        self.versions_since: dict[tuple[str, uuid.UUID], list[tuple[int, list[str], Any, dict]]] = {}
        self.placements: dict[int, Any] = {}
        self._contexts: dict[int | None, Context] = {}
        # Feed rows of this batch's creates, written before the creates were decided.
        self.feed_ahead: set[tuple[str, uuid.UUID, str]] = set()
        # Records whose server view an answer (a conflict) shows with personal values.
        self.consulted = Consulted()
        # Photos this batch names anew that its user may not name (photo_access.py).
        self.photos_refused: set[str] = set()

    def apply(self) -> None:
        """Lock, load, decide and write the batch, in the caller's transaction.

        The feed rows of the batch's creates go out before deciding, in pipeline mode:
        PostgreSQL inserts them (two per record, with their index entries) while Python
        validates and decides, where before each side waited for the other. `write`
        then takes back the rows of any create that was not applied.
        """
        self.lock_and_load()
        self.feed_ahead = self._feed_of_creates()
        # A pipeline's end is a round trip of its own: none when there is nothing to send.
        with db.pipeline() if self.feed_ahead else nullcontext():
            feed_touch(self.feed_ahead, at=self.now, created=True)
            self.decide()
        self.write()

    # --- loading ------------------------------------------------------------------------

    def lock_and_load(self) -> None:
        valid = self.valid
        # Every mutation with a usable id, envelope errors or not: a resent rejection
        # is a duplicate too, never a second receipt.
        ids = [m.mutation_id for m in self.mutations if m.mutation_id is not None]
        wanted: dict[str, set[uuid.UUID]] = defaultdict(set)
        for m in valid:
            wanted[m.rtype.name].add(m.record_id)
            parent = self._parent_ref(m)
            if parent:
                wanted[parent[0]].add(parent[1])
        # The lock and the reads that do not depend on each other go out together, in
        # pipeline mode; PostgreSQL runs them in order (the reads after the lock) while
        # Python cleans the batch's points for `_locate`, whose own query then waits for
        # them. One after the other, each side idled while the other worked.
        with db.pipeline(), ExitStack() as open_cursors:
            _lock_user(self.user)
            receipts = open_cursors.enter_context(db.cursor())
            # One index probe per id (the LATERAL ... LIMIT 1 allows no other plan): with
            # `mutation_id = ANY(...)` the planner read every receipt of the user and
            # filtered them, a cost that grew with the user's whole push history.
            receipts.execute(
                "SELECT m.id, r.payload_hash, r.result FROM unnest(%s::uuid[]) AS m(id) "
                "CROSS JOIN LATERAL (SELECT payload_hash, result FROM sync_receipt "
                "WHERE user_id = %s AND mutation_id = m.id LIMIT 1) AS r",
                [db.uuid_array(ids), self.user.pk],
            )
            pending = {
                type_name: rows.load_rows_send(registry.get(type_name), sorted(record_ids), lock=True)
                for type_name, record_ids in wanted.items()
            }
            for cursor in pending.values():
                if cursor is not None:
                    open_cursors.enter_context(cursor)
            self._locate(valid)
            for rtype in {m.rtype.name: m.rtype for m in valid}.values():
                prepare = getattr(rtype.policy, "prepare", None)  # optional in a policy
                if prepare is not None:
                    prepare(self.user)
            for mutation_id, digest, result in receipts.fetchall():
                self.seen[mutation_id] = (digest, _json(result))
            for type_name, record_ids in wanted.items():
                rtype = registry.get(type_name)
                loaded = rows.load_rows_fetch(rtype, pending[type_name])
                for record_id in record_ids:
                    row = loaded.get(record_id)
                    keys = frozenset(rtype.policy.scope_keys(row)) if row else frozenset()
                    self.states[(type_name, record_id)] = RecordState(rtype, row, row is not None, keys)
        self._load_rejected_creates(wanted)
        self._load_versions_since(valid)
        self.photos_refused = self._photos_refused(valid)

    def _photos_refused(self, valid: list[Mutation]) -> set[str]:
        """Of the photos the batch's creates and updates name that their records do not name
        already, those this user may not name: someone else's, stored or claimed. One look-up
        for the whole batch, and none when it names no new photo."""
        named: set[str] = set()
        for m in valid:
            if m.op not in ("create", "update"):
                continue
            state = self.states.get(m.key)
            current = (state.row if state else None) or {}
            for spec in m.rtype.fields:
                value = m.data.get(spec.name) if spec.kind == "photos" else None
                if isinstance(value, list):
                    already = current.get(spec.name) or ()
                    named.update(sha for sha in value
                                 if isinstance(sha, str) and SHA256_RE.match(sha) and sha not in already)
        if not named:
            return set()
        return {sha for sha, access in photo_access(self.user, named).items() if not access.nameable}

    def _feed_of_creates(self) -> set[tuple[str, uuid.UUID, str]]:
        """The feed rows the batch's creates will have if they are applied, or none at all
        when that cannot be known before deciding: a record touched by more than one
        mutation of the batch may move. All or none keeps the feed's order as `write`
        gives it (every created record's rows in one sorted insert, parents first)."""
        touches = Counter(m.key for m in self.valid)
        entries: set[tuple[str, uuid.UUID, str]] = set()
        # A new record's keys follow from the columns the server sets (author, place), so
        # they are worked out once per type and place, not once per record.
        keys_at: dict[tuple[str, Any], list[str]] = {}
        for m in self.valid:
            if m.op != "create" or m.mutation_id in self.seen or self.states[m.key].row is not None:
                continue  # a resend or a create of an existing id: no new feed rows
            if touches[m.key] > 1:
                return set()
            placement = self.placements.get(m.index)
            keys = keys_at.get((m.rtype.name, placement))
            if keys is None:
                policy = m.rtype.policy
                row = policy.new_row_columns(user=self.user, device=self.device, placement=placement)
                keys = keys_at[(m.rtype.name, placement)] = list(policy.scope_keys(row))
            for key in keys:
                entries.add((m.rtype.name, m.record_id, key))
        return entries

    def _parent_ref(self, m: Mutation) -> tuple[str, uuid.UUID] | None:
        if not m.rtype.parent or not isinstance(m.data, dict):
            return None
        value = m.data.get(m.rtype.parent[0])
        parent_id = parsing.as_uuid(value) if isinstance(value, str) else None
        return (m.rtype.parent[1], parent_id) if parent_id else None

    def _load_rejected_creates(self, wanted: dict[str, set[uuid.UUID]]) -> None:
        missing = [
            (t, rid) for t, ids in wanted.items() for rid in ids if self.states[(t, rid)].row is None
        ]
        if not missing:
            return
        with db.cursor() as cursor:
            cursor.execute(
                "SELECT record_type, record_id FROM sync_receipt WHERE user_id = %s "
                "AND record_id = ANY(%s::uuid[]) AND op = 'create' AND status = 'rejected'",
                [self.user.pk, db.uuid_array(rid for _, rid in missing)],
            )
            self.previously_rejected = set(cursor.fetchall())

    def _load_versions_since(self, valid: list[Mutation]) -> None:
        """Versions after each stale base: which fields others changed, and the base data."""
        stale: dict[tuple[str, uuid.UUID], int] = {}
        for m in valid:
            state = self.states.get(m.key)
            if (m.op in ("update", "delete") and state and state.row and m.base_version is not None
                    and m.base_version < state.row["version"]):
                key = m.key
                stale[key] = min(stale.get(key, m.base_version), m.base_version)
        if not stale:
            return
        with db.cursor() as cursor:
            cursor.execute(
                "SELECT v.record_type, v.record_id, v.version, v.changed_fields, v.device_id, v.data "
                "FROM sync_recordversion v JOIN unnest(%s::text[], %s::uuid[], %s::int[]) AS s(t, id, base) "
                "ON v.record_type = s.t AND v.record_id = s.id AND v.version >= s.base "
                "ORDER BY v.version",
                [[k[0] for k in stale], [k[1] for k in stale], list(stale.values())],
            )
            for type_name, record_id, version, changed, device_id, data in cursor.fetchall():
                # Django registers a jsonb loader that leaves the text to the ORM: decode here.
                self.versions_since.setdefault((type_name, record_id), []).append(
                    (version, changed, device_id, _json(data))
                )

    def _locate(self, valid: list[Mutation]) -> None:
        by_type: dict[str, list[tuple[int, tuple[float, float]]]] = defaultdict(list)
        for m in valid:
            loc_name = m.rtype.location_group[0] if m.rtype.location_group else None
            if m.op in ("create", "update") and loc_name and isinstance(m.data.get(loc_name), dict):
                try:
                    point = m.rtype.field_map[loc_name].clean(m.data[loc_name], self._context(None))
                except Invalid:
                    continue
                if point is not None:
                    by_type[m.rtype.name].append((m.index, point))
        for type_name, items in by_type.items():
            placements = registry.get(type_name).policy.locate([p for _, p in items])
            for (index, _), placement in zip(items, placements, strict=True):
                self.placements[index] = placement

    # --- deciding -----------------------------------------------------------------------

    def _context(self, form: tuple | None) -> Context:
        """Validation context with the code lists of `form` (id, version, code lists), or
        none; one per form for the whole batch."""
        key = form[0] if form else None
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = Context(now=self.now, max_future=self.ctx_future, choices=form[2] if form else {})
            self._contexts[key] = ctx
        return ctx

    def decide(self) -> None:
        for m in self.mutations:
            self.results[m.index] = self._decide_one(m)

    def _reject(self, m: Mutation, code: str, message: str, errors: dict | None = None) -> dict:
        result = {
            "mutation_id": str(m.mutation_id) if m.mutation_id else None,
            "id": str(m.record_id) if m.record_id else None,
            "status": REJECTED,
            "code": code,
            "message": message,
            "errors": errors or {},
        }
        self.quarantine.append((m, code, result["errors"]))
        if m.mutation_id and code != "mutation_id_reused":
            self._remember(m, result)
        if m.rtype and m.record_id and m.op == "create":
            state = self.states.get(m.key)
            if state and state.row is None:
                state.rejected_create = True
        return result

    def refuse(self, m: Mutation, refused: str) -> dict:
        """Reject `m` for what the database refused (after its savepoint rolled back) and
        store the rejection: quarantine row and receipt, so a resend is a duplicate."""
        result = self._reject(m, "constraint_violation", f"The database refused this change: {refused}.",
                              {"data": _err("constraint_violation", refused)})
        self._write_quarantine()
        self._write_receipts()
        return result

    def _remember(self, m: Mutation, result: dict) -> None:
        # The receipt keeps the outcome, never the record view a conflict answer carries: a
        # duplicate is answered from the receipt, and the record's values (and the sender's
        # right to see them) may have changed since; a pull gives them as they are now.
        if "record" in result:
            result = {key: value for key, value in result.items() if key != "record"}
        self.seen[m.mutation_id] = (m.payload_hash, result)
        self.receipts_new.append((m, result))

    def _decide_one(self, m: Mutation) -> dict:
        if m.mutation_id is not None and m.mutation_id in self.seen:
            digest, original = self.seen[m.mutation_id]
            if digest == m.payload_hash:
                return {
                    "mutation_id": str(m.mutation_id),
                    "id": str(m.record_id) if m.record_id else original.get("id"),
                    "status": DUPLICATE,
                    "original": original,
                    **({"version": original["version"]} if "version" in original else {}),
                }
            return self._reject(
                m, "mutation_id_reused", "This mutation_id was already used for a different mutation.",
                {"mutation_id": _err("mutation_id_reused", "already used for a different mutation")},
            )
        if m.too_deep:
            limit = settings.SYNC_MAX_MUTATION_DEPTH
            return self._reject(m, "too_deep", f"The mutation nests deeper than {limit} levels.",
                                {"mutation": _err("too_deep", f"deeper than {limit} levels of objects and arrays")})
        if m.envelope_errors:
            return self._reject(m, "invalid_mutation", "The mutation envelope is not valid.", m.envelope_errors)
        state = self.states[m.key]
        parent = self._parent_ref(m)
        if parent and self._parent_rejected(parent):
            return self._reject(
                m, "depends_on_rejected", "This mutation depends on a record whose creation was rejected.",
                {m.rtype.parent[0]: _err("depends_on_rejected", "the parent record was rejected")},
            )
        if m.op == "create":
            return self._create(m, state)
        if state.row is None:
            if state.rejected_create or m.key in self.previously_rejected:
                return self._reject(
                    m, "depends_on_rejected", "The creation of this record was rejected.",
                    {"id": _err("depends_on_rejected", "the record's creation was rejected")},
                )
            return self._reject(m, "not_found", "No such record.", {"id": _err("not_found", "no such record")})
        if m.op == "update":
            return self._update(m, state)
        return self._delete(m, state)

    def _parent_rejected(self, parent: tuple[str, uuid.UUID]) -> bool:
        state = self.states.get(parent)
        return bool(state and state.row is None and (state.rejected_create or parent in self.previously_rejected))

    def _clean(self, m: Mutation, *, partial: bool, row: Row | None) -> tuple[dict, dict, Any]:
        """Clean `data` against the form version it names. Returns (values, errors, form)."""
        rtype, data = m.rtype, m.data
        errors: dict[str, list] = {}
        for key in data.keys() & rtype.read_only:
            errors[key] = _err("read_only", f"{key} is set by the server")
        fields = rtype.field_map
        for key in data.keys() - fields.keys() - rtype.read_only:
            errors[key] = _err("unknown_field", f"{key} is not a field of {rtype.name}")
        version = data.get(rows.FORM_FIELD) if rows.FORM_FIELD in data else (row or {}).get(rows.FORM_FIELD)
        form = None
        if rows.FORM_FIELD in fields:
            if version is None and fields[rows.FORM_FIELD].required and (not partial or rows.FORM_FIELD in data):
                # Types whose records are validated against a named form version must name it.
                code = "null" if partial else "required"
                errors[rows.FORM_FIELD] = _err(code, f"{rows.FORM_FIELD} is required")
            elif version is not None and (isinstance(version, bool) or not isinstance(version, int)):
                errors[rows.FORM_FIELD] = _err("wrong_type", "form_version must be an integer")
            else:
                form = rtype.policy.form(version)
                if form is None:
                    errors[rows.FORM_FIELD] = _err("unknown_form_version", f"no form version {version}")
        ctx = self._context(form)
        values: dict[str, Any] = {}
        for name, spec in fields.items():
            if name == rows.FORM_FIELD:
                continue
            if name not in data:
                if not partial and spec.required:
                    errors[name] = _err("required", f"{name} is required")
                continue
            if partial and spec.required and data[name] is None:
                errors[name] = _err("null", f"{name} may not be null")
                continue
            try:
                values[name] = spec.clean(data[name], ctx)
            except Invalid as exc:
                errors[name] = _err(exc.code, exc.message)
                continue
            if spec.kind == "photos" and self.photos_refused:
                already = (row or {}).get(name) or ()
                # One answer for a photo stored by someone else and one another record
                # claimed: which it is would tell the sender something about others' records.
                if any(sha in self.photos_refused and sha not in already for sha in values[name]):
                    errors[name] = _err("photo_unavailable", "a photo named here is not one you may attach")
        if form is not None:
            values["form_id"] = form[0]
            values[rows.FORM_FIELD] = form[1]
        return values, errors, form

    def _record_view(self, state: RecordState) -> dict:
        """The record as a pull upsert shows it (author's name, latest review note)."""
        row = dict(state.row)
        state.rtype.policy.enrich([row])
        return record_view(state.rtype, row, self.user, self.consulted)

    def _new_version(self, m: Mutation, state: RecordState, changed: list[str]) -> int:
        row = state.row
        row["version"] += 1 if state.versions or state.in_db else 0
        row["updated_at"] = self.now
        state.dirty = True
        # The snapshot is taken now: a record changed twice in one push keeps both versions.
        state.versions.append((row["version"], changed, m.mutation_id, wire_data(state.rtype, row)))
        return row["version"]

    def _create(self, m: Mutation, state: RecordState) -> dict:
        rtype, policy = m.rtype, m.rtype.policy
        if state.row is not None:
            return self._create_existing(m, state)
        values, errors, form = self._clean(m, partial=False, row=None)
        placement = self.placements.get(m.index)
        parent = self._parent_ref(m)
        if parent and not errors:
            parent_state = self.states.get(parent)
            if parent_state is None or parent_state.row is None or parent_state.row.get("deleted_at"):
                errors[rtype.parent[0]] = _err("not_found", "the parent record does not exist")
            elif not policy.can_edit(self.user, parent_state.row):
                errors[rtype.parent[0]] = _err("permission_denied", "you may not add to this record")
        if not errors:
            errors.update(policy.validate(values, form[2] if form else {}))
        if errors:
            return self._reject(m, "validation_failed", "The record is not valid.", errors)
        if not policy.can_create(self.user, placement):
            return self._reject(
                m, "permission_denied", "You may not record in this area.",
                {rtype.location_group[0]: _err("area_forbidden", "outside the areas you may record in")},
            )
        row: Row = {spec.name: spec.default for spec in rtype.fields if spec.name != rows.FORM_FIELD}
        for spec in rtype.fields:
            if spec.kind in ("text_list", "photos", "json_list") and row.get(spec.name) is None:
                row[spec.name] = []
            if spec.kind == "text" and row.get(spec.name) is None and not spec.nullable:
                row[spec.name] = ""
        row.update(values)
        row.update(policy.new_row_columns(user=self.user, device=self.device, placement=placement))
        row.update(
            id=m.record_id, version=1, created_at=self.now, updated_at=self.now,
            client_time=m.client_time, deleted_at=None,
        )
        state.row = row
        state.created_here = True
        version = self._new_version(m, state, sorted(set(values) - {"form_id"}))
        result = {"mutation_id": str(m.mutation_id), "id": str(m.record_id), "status": "applied", "version": version}
        self._remember(m, result)
        return result

    def _create_existing(self, m: Mutation, state: RecordState) -> dict:
        """A create of an id that exists: a re-sent outbox (same author, same data) is a
        duplicate; anything else is `id_exists`."""
        row = state.row
        values, errors, _ = self._clean(m, partial=False, row=None)
        same_author = row.get("author_id") == self.user.pk
        same_data = not errors and all(row.get(k) == v for k, v in values.items() if k != rows.FORM_FIELD)
        if same_author and same_data and not row.get("deleted_at"):
            original = self._original_create_result(m, row)
            result = {
                "mutation_id": str(m.mutation_id), "id": str(m.record_id), "status": DUPLICATE,
                "original": original, "version": row["version"],
            }
            self._remember(m, {**original, "mutation_id": str(m.mutation_id)})
            return result
        return self._reject(m, "id_exists", "A record with this id already exists.",
                            {"id": _err("id_exists", "id already used")})

    def _original_create_result(self, m: Mutation, row: Row) -> dict:
        with db.cursor() as cursor:
            cursor.execute(
                "SELECT result FROM sync_receipt WHERE record_type = %s AND record_id = %s "
                "AND op = 'create' AND status <> 'rejected' ORDER BY id LIMIT 1",
                [m.rtype.name, m.record_id],
            )
            found = cursor.fetchone()
        if found:
            return _json(found[0])
        return {"id": str(m.record_id), "status": "applied", "version": 1}

    def _server_changed(self, m: Mutation, state: RecordState) -> tuple[set[str], dict | None]:
        """Fields others changed after the device's base version, and the base data."""
        changed: set[str] = set()
        base_data = None
        for version, fields, device_id, data in self.versions_since.get(m.key, []):
            if version == m.base_version:
                base_data = data
            elif version > m.base_version and device_id != self.device.pk:
                changed.update(fields)
        # Versions made earlier in this push are this device's own lineage: never counted.
        return changed, base_data

    def _update(self, m: Mutation, state: RecordState) -> dict:
        rtype, policy, row = m.rtype, m.rtype.policy, state.row
        if not policy.can_edit(self.user, row):
            return self._reject(m, "permission_denied", "You may not edit this record.",
                                {"id": _err("permission_denied", "you may not edit this record")})
        if m.base_version > row["version"]:
            return self._reject(
                m, "invalid_base_version", "base_version is newer than the server's version.",
                {"base_version": _err("invalid_base_version", f"server version is {row['version']}")},
            )
        values, errors, form = self._clean(m, partial=True, row=row)
        if errors:
            return self._reject(m, "validation_failed", "The change is not valid.", errors)
        patch = {k: v for k, v in values.items() if k != rows.FORM_FIELD and row.get(k) != v}
        if row.get("deleted_at") or policy.is_locked(row):
            if not patch:
                return self._ok(m, state, "applied")
            return self._conflict_whole(m, state, patch, "deleted" if row.get("deleted_at") else "review_locked")
        if not patch:
            return self._ok(m, state, "applied")
        status = "applied"
        conflicts: dict[str, tuple[Any, Any]] = {}
        location_conflict = False
        if m.base_version < row["version"]:
            server_changed, base_data = self._server_changed(m, state)
            base = self._base_row(rtype, base_data)
            outcome = merge_patch(
                current=row, patch=patch, server_changed=server_changed, base=base,
                location_group=rtype.location_group, tolerance_m=self.tolerance_m, sent=values,
            )
            patch, conflicts, location_conflict = outcome.apply, outcome.conflicts, outcome.location_conflict
            status = "conflict" if conflicts else "merged"
        loc_name = rtype.location_group[0] if rtype.location_group else None
        if loc_name and loc_name in patch:
            placement = self.placements.get(m.index)
            if not policy.can_move_to(self.user, row, placement):
                return self._reject(
                    m, "permission_denied", "You may not move this record into that area.",
                    {loc_name: _err("area_forbidden", "outside the areas you may record in")},
                )
            patch.update(policy.placement_columns(placement))
        candidate = {**row, **patch}
        errors = policy.validate(candidate, form[2] if form else {})
        if errors:
            return self._reject(m, "validation_failed", "The change is not valid.", errors)
        version = row["version"]
        if patch:
            row.update(patch)
            if "form_id" in values:
                row["form_id"], row[rows.FORM_FIELD] = values["form_id"], values[rows.FORM_FIELD]
            row.update(policy.after_edit(row))
            changed = sorted(k for k in patch if k in rtype.field_map)
            version = self._new_version(m, state, changed)
        result = {"mutation_id": str(m.mutation_id), "id": str(m.record_id), "status": status, "version": version}
        if conflicts:
            reason = "location" if location_conflict and len(conflicts) <= len(rtype.location_group) else "fields"
            result["conflict_id"] = self._add_conflict(m, state, conflicts, reason)
            result["reason"] = reason
            result["record"] = self._record_view(state)
        self._remember(m, result)
        return result

    def _base_row(self, rtype: RecordType, base_data: dict | None) -> Row | None:
        if not base_data:
            return None
        fields = rtype.field_map
        base: Row = {}
        ctx = self._context(None)
        for name, value in base_data.items():
            spec = fields.get(name)
            if spec is not None and spec.kind in ("point", "number"):
                try:
                    base[name] = spec.clean(value, ctx)
                except Invalid:
                    continue
        return base

    def _delete(self, m: Mutation, state: RecordState) -> dict:
        policy, row = m.rtype.policy, state.row
        if not policy.can_edit(self.user, row):
            return self._reject(m, "permission_denied", "You may not delete this record.",
                                {"id": _err("permission_denied", "you may not delete this record")})
        if m.base_version > row["version"]:
            return self._reject(
                m, "invalid_base_version", "base_version is newer than the server's version.",
                {"base_version": _err("invalid_base_version", f"server version is {row['version']}")},
            )
        if row.get("deleted_at"):
            return self._ok(m, state, "merged")
        if policy.is_locked(row):
            return self._conflict_whole(m, state, {"_deleted": True}, "review_locked")
        if m.base_version < row["version"]:
            server_changed, _ = self._server_changed(m, state)
            if server_changed:
                return self._conflict_whole(m, state, {"_deleted": True}, "fields")
        row["deleted_at"] = self.now
        version = self._new_version(m, state, ["_deleted"])
        result = {"mutation_id": str(m.mutation_id), "id": str(m.record_id),
                  "status": "applied" if m.base_version == version - 1 else "merged", "version": version}
        self._remember(m, result)
        return result

    def _ok(self, m: Mutation, state: RecordState, status: str) -> dict:
        result = {"mutation_id": str(m.mutation_id), "id": str(m.record_id), "status": status,
                  "version": state.row["version"]}
        self._remember(m, result)
        return result

    def _conflict_whole(self, m: Mutation, state: RecordState, patch: dict, reason: str) -> dict:
        conflicts = {k: (v, state.row.get(k, False if k == "_deleted" else None)) for k, v in patch.items()}
        if "_deleted" in conflicts:
            conflicts["_deleted"] = (True, bool(state.row.get("deleted_at")))
        result = {
            "mutation_id": str(m.mutation_id), "id": str(m.record_id), "status": "conflict",
            "version": state.row["version"], "conflict_id": self._add_conflict(m, state, conflicts, reason),
            "reason": reason,
            "record": self._record_view(state),
        }
        self._remember(m, result)
        return result

    def _add_conflict(self, m: Mutation, state: RecordState, conflicts: dict, reason: str) -> str:
        conflict_id = uuid.uuid4()
        fields = m.rtype.field_map
        wire = {
            name: {
                "device": to_wire(fields[name], device) if name in fields else device,
                "server": to_wire(fields[name], server) if name in fields else server,
            }
            for name, (device, server) in conflicts.items()
        }
        self.conflicts.append({
            "id": conflict_id, "record_type": m.rtype.name, "record_id": m.record_id,
            "mutation_id": m.mutation_id, "reason": reason, "base_version": m.base_version,
            "server_version": state.row["version"], "fields": wire,
        })
        return str(conflict_id)

    # --- writing ------------------------------------------------------------------------

    def write(self) -> None:
        by_type_new: dict[str, list[Row]] = defaultdict(list)
        by_type_changed: dict[str, list[Row]] = defaultdict(list)
        versions: list[tuple] = []
        feed: list[tuple[str, uuid.UUID, str]] = []
        feed_new: list[tuple[str, uuid.UUID, str]] = []
        collected: dict[tuple[str, str], list] = defaultdict(list)
        for (type_name, record_id), state in self.states.items():
            if not state.dirty:
                continue
            (by_type_changed if state.in_db else by_type_new)[type_name].append(state.row)
            for version, changed, mutation_id, view in state.versions:
                versions.append((type_name, record_id, version, changed, view, mutation_id))
            for key in state.old_keys | frozenset(state.rtype.policy.scope_keys(state.row)):
                (feed if state.in_db else feed_new).append((type_name, record_id, key))
            # A tombstone keeps the record's data, so a delete is an alteration, not an erasure.
            action = "alteration" if state.in_db else "collection"
            collected[(type_name, action)].append(record_id)
        # The feed goes first, in pipeline mode: while PostgreSQL writes its rows, Python
        # builds the rows the COPYs below send. Creates' rows were written ahead (apply),
        # so here there is only what the decision changed: updated records' rows, and a
        # create that was not applied taken back.
        written = set(feed_new)
        dropped, added = self.feed_ahead - written, written - self.feed_ahead
        with db.pipeline() if dropped or added or feed else nullcontext():
            feed_drop(dropped)
            feed_touch(added, at=self.now, created=True)  # records are never hard-deleted: no old rows
            feed_touch(feed, at=self.now)
            new_rows = {name: rows.copy_values(registry.get(name), found) for name, found in by_type_new.items()}
            version_rows = self._version_rows(versions)
            receipt_rows = self._receipt_rows()
        # Parents before children: an audit must exist before its items point at it.
        # Every row was placed by its policy's `locate` while deciding (permissions need
        # the area), so the database need not place the same points again.
        with rows.placed_by_engine():
            for rtype in registry.all_types():
                rows.copy_rows(rtype, new_rows.get(rtype.name, []))
                rows.update_rows(rtype, by_type_changed.get(rtype.name, []))
        self._copy_versions(version_rows)
        self._copy_receipts(receipt_rows)
        self._write_conflicts()
        self._write_quarantine()
        for (type_name, action), ids in collected.items():
            registry.get(type_name).policy.record_collected(
                user=self.user, device=self.device, action=action, record_ids=ids
            )
        self.consulted.log(user=self.user, device=self.device, purpose=CONFLICT_ANSWER)

    def _version_rows(self, versions: list[tuple]) -> list[tuple]:
        return [
            (type_name, record_id, version, db.text_array(changed), orjson.dumps(view).decode(),
             self.user.pk, self.device.pk, mutation_id, self.now)
            for type_name, record_id, version, changed, view, mutation_id in versions
        ]

    def _copy_versions(self, prepared: list[tuple]) -> None:
        db.copy_in("COPY sync_recordversion (record_type, record_id, version, changed_fields, data, user_id, "
                   "device_id, mutation_id, created_at) FROM STDIN", prepared)

    def _receipt_rows(self) -> list[tuple]:
        return [
            (self.user.pk, self.device.pk, m.mutation_id, m.rtype.name if m.rtype else "",
             m.record_id or uuid.UUID(int=0), m.op or "", m.payload_hash, result["status"], _jsonb(result), self.now)
            for m, result in self.receipts_new
        ]

    def _copy_receipts(self, prepared: list[tuple]) -> None:
        db.copy_in("COPY sync_receipt (user_id, device_id, mutation_id, record_type, record_id, op, "
                   "payload_hash, status, result, created_at) FROM STDIN", prepared)

    def _write_receipts(self) -> None:
        self._copy_receipts(self._receipt_rows())

    def _write_conflicts(self) -> None:
        if not self.conflicts:
            return
        with db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO sync_conflict (id, record_type, record_id, user_id, device_id, mutation_id, "
                "reason, base_version, server_version, fields, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)",
                [
                    (c["id"], c["record_type"], c["record_id"], self.user.pk, self.device.pk,
                     c["mutation_id"], c["reason"], c["base_version"], c["server_version"],
                     _jsonb(c["fields"]), self.now)
                    for c in self.conflicts
                ],
            )

    def _write_quarantine(self) -> None:
        if not self.quarantine:
            return
        # A rejection with a receipt is never decided twice. One without (no usable
        # mutation_id, or a reused one) is decided again on every resend, so it is kept
        # only if the same user has not sent the same payload with the same fault before:
        # resending changes nothing (principle 2). The user's push lock makes this safe.
        with db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO sync_quarantinedmutation (user_id, device_id, mutation_id, record_type, "
                "record_id, op, code, errors, payload, created_at, resolution_note) "
                "SELECT %s, %s, %s, %s, %s, %s, %s, %s::jsonb, v.payload, %s, '' "
                "FROM (SELECT %s::jsonb AS payload) v WHERE NOT %s OR NOT EXISTS ("
                "SELECT 1 FROM sync_quarantinedmutation q WHERE q.user_id = %s AND q.mutation_id = %s "
                "AND q.code = %s AND q.payload = v.payload)",
                [
                    (self.user.pk, self.device.pk, mutation_id, m.rtype.name if m.rtype else "",
                     str(m.record_id or "")[:64], m.op, code, _jsonb(errors), self.now, _jsonb(m.raw),
                     m.mutation_id is None or code == "mutation_id_reused", self.user.pk, mutation_id, code)
                    for m, code, errors in self.quarantine
                    for mutation_id in [str(m.mutation_id or "")[:64]]
                ],
            )


def _json(value: Any) -> Any:
    """A jsonb value read on a raw cursor: Django's loader leaves it as text."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _jsonb(value: Any) -> str:
    """JSON text for a jsonb column. jsonb cannot hold NUL (U+0000), which a rejected
    mutation may well carry; it is kept as U+FFFD so the mutation is still kept."""
    try:
        text = orjson.dumps(value)
    except TypeError:
        value = repr(value)
        text = orjson.dumps(value)
    if b"\\u0000" in text:
        text = orjson.dumps(_without_nul(value))
    return text.decode()


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(v) for v in value]
    return value


def push_apply(*, user, device, mutations: list[Any]) -> list[dict]:
    """Apply a push; returns one result per mutation, in order."""
    parsed = [parse_mutation(i, raw) for i, raw in enumerate(mutations)]
    for attempt in range(3):
        try:
            return _push_batch(user, device, parsed)
        except (*RETRYABLE, *REFUSED) as exc:
            if not retryable(exc):
                log.warning("push batch failed (%s); replaying one mutation at a time", exc)
                return _push_one_by_one(user, device, parsed)
            # A deadlock, a serialization failure, a racing create, a lost connection.
            log.warning("push attempt %d failed with %s", attempt + 1, type(exc).__name__)
            if attempt < 2:
                continue
            if isinstance(exc, RACING):
                return _push_one_by_one(user, device, parsed)
            raise ApiError("busy", "The server is busy; send the same push again.", status_code=503,
                           headers={"Retry-After": "2"}) from exc
    raise AssertionError("unreachable")


def retryable(exc: BaseException) -> bool:
    """Whether deciding the push again may succeed. In pipeline mode an error comes up
    at whichever statement reads results next: a statement sent ahead by the engine
    (psycopg's class) may surface in a query of Django's, which wraps it in its own class
    (an IntegrityError), so the cause is what tells."""
    return isinstance(exc, RETRYABLE) or isinstance(exc.__cause__, RETRYABLE)


def _push_batch(user, device, parsed: list[Mutation]) -> list[dict]:
    with transaction.atomic():
        batch = Batch(user=user, device=device, mutations=parsed)
        batch.apply()
        device_touch(device, "last_push_at", batch.now)
    return batch.results


def _push_one_by_one(user, device, parsed: list[Mutation]) -> list[dict]:
    """Slow path after an unforeseen database error: each mutation in its own savepoint."""
    with transaction.atomic():
        # Taken here as well as in each savepoint's lock_and_load: rolling a savepoint back
        # releases the locks taken inside it, and the refusal's receipt is written after.
        _lock_user(user)
        results = [_decide_alone(user, device, m) for m in parsed]
        device_touch(device, "last_push_at", timezone.now())
    return results


def _decide_alone(user, device, m: Mutation) -> dict:
    """One mutation in its savepoint. A refusal by the database (a constraint, a value it
    cannot hold) is the mutation's own and final: rejected, quarantined, receipted. A
    deadlock or a serialization failure is the moment's, not the mutation's: it is tried
    again, and if it persists the whole push is a 503 the handheld resends — storing it as
    a permanent rejection would lose a change that was never wrong."""
    for attempt in range(3):
        try:
            with transaction.atomic():
                batch = Batch(user=user, device=device, mutations=[_renumbered(m)])
                batch.apply()
                return batch.results[0]
        except (*REFUSED, *RETRYABLE) as exc:
            if not _transient(exc):
                return Batch(user=user, device=device, mutations=[m]).refuse(m, _refusal(exc))
            log.warning("replaying mutation %s: attempt %d failed with %s", m.mutation_id, attempt + 1,
                        type(exc.__cause__ or exc).__name__)
    raise ApiError("busy", "The server is busy; send the same push again.", status_code=503,
                   headers={"Retry-After": "2"})


def _transient(exc: BaseException) -> bool:
    """A lock or snapshot the mutation lost to another transaction, or a lost connection;
    through Django's wrapper as well as psycopg's own class (pipeline mode, see retryable).
    A unique violation is not: alone in its savepoint, a create that still collides lost
    its race to another user's create of the same id, and is refused."""
    transient = (OperationalError, psycopg.OperationalError)
    return isinstance(exc, transient) or isinstance(exc.__cause__, transient)


def _lock_user(user) -> None:
    """One lock per user serialises a user's pushes (the same push arriving twice at once,
    or two handhelds of one person), so receipts are read and written without a race.
    Records others edit meanwhile are held by row locks; a create racing another user's
    create of the same id fails on a unique key and the batch is decided again (push_apply).
    Taken again by the same transaction, it is granted at once."""
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"push:{user.pk}"])


def _refusal(exc: Exception) -> str:
    """What the database refused, for the device and the quarantine: the error class and,
    where PostgreSQL names it, the constraint (never the statement or its values)."""
    cause = exc.__cause__ if isinstance(exc.__cause__, psycopg.Error) else exc
    diag = getattr(cause, "diag", None)
    constraint = getattr(diag, "constraint_name", None) if diag is not None else None
    return f"{type(cause).__name__}" + (f" ({constraint})" if constraint else "")


def _renumbered(m: Mutation) -> Mutation:
    m.index = 0
    return m


def device_touch(device, column: str, at: datetime) -> None:
    """Record a device's last push or pull time."""
    with db.cursor() as cursor:
        cursor.execute(f"UPDATE sync_device SET {column} = %s WHERE id = %s", [at, device.pk])
