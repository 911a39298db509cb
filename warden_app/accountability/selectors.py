"""Reads of the accountability part: the access log and its chain, subject access search,
retention due dates, and the form an escalation takes on the wire."""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.gis.geos import Point
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.urls import reverse
from django.utils import timezone

from fieldsync import parsing
from fieldsync.errors import invalid

from ..models import AccessLogEntry, AccessLogSeal, AuditItem, Observation, RetentionPeriod, StreetAudit, User
from ..models.areas import BNG_SRID
from .chain import CONTENT_FIELDS, GENESIS, link_hash

RECORD_MODELS = {"observation": Observation, "street_audit": StreetAudit, "audit_item": AuditItem}

# --- the access log --------------------------------------------------------------------


@dataclass(frozen=True)
class LogFilter:
    actor: User | None = None
    record_id: uuid.UUID | None = None
    action: str | None = None
    record_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    # Entries whose stated purpose holds this text (case-insensitive): the DPO's pages.
    purpose_contains: str | None = None

    def q(self) -> Q:
        q = Q()
        if self.actor is not None:
            q &= Q(actor=self.actor)
        if self.record_id is not None:
            q &= Q(record_ids__contains=[self.record_id])
        if self.action:
            q &= Q(action=self.action)
        if self.record_type:
            q &= Q(record_type=self.record_type)
        if self.since is not None:
            q &= Q(at__gte=self.since)
        if self.until is not None:
            q &= Q(at__lt=self.until)
        if self.purpose_contains:
            q &= Q(purpose__icontains=self.purpose_contains)
        return q

    def describe(self) -> dict[str, Any]:
        described = {
            "actor": self.actor.get_username() if self.actor else None,
            "record_id": str(self.record_id) if self.record_id else None,
            "action": self.action, "record_type": self.record_type,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            # Typed text may name someone, and the log keeps what it holds for ever (as the
            # admin's text search): that it was used, not what was typed.
            "purpose_contains": "(text search)" if self.purpose_contains else None,
        }
        return {k: v for k, v in described.items() if v is not None}


def log_actor(text: str) -> User:
    """The person a log filter names: an id in ASCII digits, or a username (which may be
    all digits too: then the id). ApiError for no such user."""
    text = text.strip()
    if len(text) > parsing.MAX_USERNAME_CHARS:
        raise invalid("actor", "not_found", "unknown user", summary="No such user.")
    lookup = {"pk": parsing.integer("actor", text)} if text.isascii() and text.isdigit() else {"username": text}
    actor = User.objects.filter(**lookup).first()
    if actor is None:
        raise invalid("actor", "not_found", "unknown user", summary="No such user.")
    return actor


def access_log_page(flt: LogFilter, *, limit: int, before: int | None = None) -> tuple[list[dict], bool]:
    """Newest first, `limit` rows with id below `before`; and whether more follow."""
    qs = AccessLogEntry.objects.filter(flt.q())
    if before is not None:
        qs = qs.filter(id__lt=before)
    rows = list(
        qs.order_by("-id").values(
            "id", "at", "actor_id", "actor__username", "action", "record_type", "record_ids", "device_id",
            "recipient", "purpose", "details", "seq", "hash",
        )[: limit + 1]
    )
    return rows[:limit], len(rows) > limit


@dataclass
class Verification:
    ok: bool
    checked: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    unsealed: int = 0
    problem: str = ""
    broken_seq: int | None = None
    broken_id: int | None = None
    anchors_checked: list[int] = field(default_factory=list)
    # The anchor outside the database (ACCESS_LOG_ANCHOR): where, how many heads it holds,
    # the last one's seq; and the seals recorded in the database.
    anchor_url: str = ""
    anchored: int = 0
    last_anchored_seq: int = 0
    seals: int = 0
    warnings: list[str] = field(default_factory=list)


_UNSET = object()


def access_log_verify(*, anchors: dict[int, str] | None = None, store=_UNSET, chunk: int = 2000) -> Verification:
    """Recompute the chain from seq 1: every seq present once and in turn (a deleted row
    leaves a gap), each prev_hash the hash before it, each hash what its row's content
    gives (an edited row no longer does).

    Then hold it to every head recorded elsewhere: `anchors` ({seq: hash}, given by hand),
    the seals in the database (AccessLogSeal), and every anchor in `store` (default: the
    configured ACCESS_LOG_ANCHOR). Each head must be reproduced by the chain at its seq
    (history rewritten or re-inserted with recomputed hashes is not), the chain must reach
    the last one (a cut end, or a TRUNCATE, even followed by a new chain built to look
    consistent, does not), and every seal in the database must have its anchor (an anchor
    lost or edited since). An anchor that is missing or unreadable is a failure too."""
    from .anchors import AnchorError, AnchorMissing, anchor_store

    manual = dict(anchors or {})
    result = Verification(ok=True)
    store = anchor_store() if store is _UNSET else store
    seals = {
        seal["head_seq"]: seal
        for seal in AccessLogSeal.objects.order_by("id").values("id", "head_seq", "head_id", "head_hash")
    }
    result.seals = len(seals)
    external: dict[int, list] = {}
    if store is not None:
        result.anchor_url = store.url
        try:
            read = store.read()
        except AnchorMissing as exc:
            read = []
            if seals or AccessLogEntry.objects.filter(seq__isnull=False).exists():
                return _broken(result, f"the anchor is missing ({exc}), yet the log has been sealed: "
                                       "the anchor was removed, or points elsewhere", None, None)
        except AnchorError as exc:
            return _broken(result, f"the anchor cannot be read: {exc}", None, None)
        for anchor in read:
            external.setdefault(anchor.seq, []).append(anchor)
        result.anchored = len(read)
        result.last_anchored_seq = max(external, default=0)
        # A store that fetched only its newest heads still names every seal it holds.
        anchored_seals = {anchor.seal for anchor in read} | store.seals
        unanchored = [seal for seal in seals.values() if seal["id"] not in anchored_seals]
        if unanchored:
            first = unanchored[0]
            return _broken(result, f"seal {first['id']} (seq {first['head_seq']}) has no anchor in {store.url} "
                                   f"({len(unanchored)} seals have none): the anchor was altered or lost",
                           first["head_seq"], first["head_id"])
    else:
        result.warnings.append("no anchor is configured (ACCESS_LOG_ANCHOR): a database superuser could cut "
                               "the chain's end or rewrite it unseen")

    prev, expected = GENESIS, 1
    rows = (
        AccessLogEntry.objects.filter(seq__isnull=False).order_by("seq")
        .values(*CONTENT_FIELDS, "seq", "prev_hash", "hash").iterator(chunk_size=chunk)
    )
    for row in rows:
        seq = row["seq"]
        if seq != expected:
            what = "missing" if seq > expected else "repeated"
            return _broken(result, f"seq {expected} is {what}: found seq {seq} (row id {row['id']}) next; "
                                   "a sealed row was deleted", seq, row["id"])
        if row["prev_hash"] != prev:
            return _broken(result, f"seq {seq} (row id {row['id']}) does not follow on from seq {seq - 1}: "
                                   "its prev_hash differs", seq, row["id"])
        digest = link_hash(prev, row, seq)
        if digest != row["hash"]:
            return _broken(result, f"seq {seq} (row id {row['id']}) was altered: its content no longer "
                                   "gives its hash", seq, row["id"])
        if seq in manual:
            if manual.pop(seq) != digest:
                return _broken(result, f"seq {seq} does not match its anchor: the chain was rewritten",
                               seq, row["id"])
            result.anchors_checked.append(seq)
        for anchor in external.pop(seq, ()):
            if (anchor.hash, anchor.log_id) != (digest, row["id"]):
                return _broken(result, f"seq {seq} (row id {row['id']}) does not match the anchor of seal "
                                       f"{anchor.seal} (row id {anchor.log_id}, written {anchor.at}): the chain "
                                       "was rewritten up to here", seq, row["id"])
        seal = seals.pop(seq, None)
        if seal is not None and (seal["head_hash"], seal["head_id"]) != (digest, row["id"]):
            return _broken(result, f"seq {seq} (row id {row['id']}) does not match seal {seal['id']} in the "
                                   "database: the chain was rewritten", seq, row["id"])
        prev, expected = digest, expected + 1
        result.checked += 1
    result.head_seq, result.head_hash = expected - 1, prev
    if external:
        missing = min(external)
        anchor = external[missing][0]
        return _broken(result, f"the anchor of seal {anchor.seal} (written {anchor.at}) names seq {missing}, beyond "
                               f"the end of the chain (seq {expected - 1}): sealed rows were removed from its end, "
                               "or the log was emptied", missing, None)
    if manual:
        missing = min(manual)
        return _broken(result, f"anchored seq {missing} is beyond the end of the chain (seq {expected - 1}): "
                               "sealed rows were removed from its end", missing, None)
    if seals:
        missing = min(seals)
        return _broken(result, f"seal {seals[missing]['id']} in the database names seq {missing}, beyond the end "
                               f"of the chain (seq {expected - 1}): sealed rows were removed from its end",
                       missing, None)
    result.unsealed = AccessLogEntry.objects.filter(seq__isnull=True).count()
    return result


def _broken(result: Verification, problem: str, seq: int | None, row_id: int | None) -> Verification:
    result.ok, result.problem, result.broken_seq, result.broken_id = False, problem, seq, row_id
    return result


# --- subject access ----------------------------------------------------------------------


@dataclass(frozen=True)
class SubjectCriteria:
    """What the DPO knows of the person. Text is matched case-insensitively as a
    substring; age against a person's approx_age (a number, or digits in a string)."""

    name: str = ""
    description: str = ""
    age_min: int | None = None
    age_max: int | None = None

    def given(self) -> list[str]:
        """Which criteria were used, for the log (never their values: a searched name is
        itself personal data, and the log keeps what it holds for ever)."""
        names = [("name", self.name), ("description", self.description),
                 ("age_min", self.age_min), ("age_max", self.age_max)]
        return [key for key, value in names if value not in ("", None)]


def subject_criteria(given) -> SubjectCriteria:
    """The criteria from a request's parameters (the API's query, the DPO page's form):
    name, description (at least 2 characters each), age or age_min/age_max (whole numbers).
    ApiError for a bad one."""
    age = parsing.integer("age", given.get("age"), minimum=0)
    criteria = SubjectCriteria(
        name=(given.get("name") or "").strip(), description=(given.get("description") or "").strip(),
        age_min=age if age is not None else parsing.integer("age_min", given.get("age_min"), minimum=0),
        age_max=age if age is not None else parsing.integer("age_max", given.get("age_max"), minimum=0),
    )
    for name in ("name", "description"):
        if 0 < len(getattr(criteria, name)) < 2:
            raise invalid(name, "too_short", "at least 2 characters")
    return criteria


def _like(term: str) -> str:
    return "%" + re.sub(r"([\\%_])", r"\\\1", term) + "%"


_PERSONS = (
    "jsonb_array_elements(CASE WHEN jsonb_typeof(persons_involved) = 'array' THEN persons_involved ELSE '[]' END)"
)
_AGE = ("(CASE WHEN jsonb_typeof(p->'approx_age') = 'number' THEN (p->>'approx_age')::numeric "
        "WHEN p->>'approx_age' ~ '^\\s*[0-9]{1,3}\\s*$' THEN trim(p->>'approx_age')::numeric END)")
_FREE_TEXT = (
    "(description || ' ' || coalesce((SELECT string_agg(v.value, ' ') FROM " + _PERSONS + " p, "
    "jsonb_each_text(CASE WHEN jsonb_typeof(p) = 'object' THEN p ELSE '{}' END) v), ''))"
)


def subjects_search(criteria: SubjectCriteria) -> QuerySet:
    """Every observation naming the person: one with a person entry matching all the
    criteria, or (with no age given) whose free text, its description and its persons'
    details, holds every text given. Deleted and restricted records included: subject
    access covers all the data held. A sequential scan with ILIKE: DPO requests are rare,
    and the table is scanned once per request."""
    person, params = [], []
    if criteria.name:
        person.append("p->>'name' ILIKE %s")
        params.append(_like(criteria.name))
    if criteria.description:
        person.append("p->>'description' ILIKE %s")
        params.append(_like(criteria.description))
    if criteria.age_min is not None:
        person.append(f"{_AGE} >= %s")
        params.append(criteria.age_min)
    if criteria.age_max is not None:
        person.append(f"{_AGE} <= %s")
        params.append(criteria.age_max)
    sql = f"EXISTS (SELECT 1 FROM {_PERSONS} p WHERE jsonb_typeof(p) = 'object' AND {' AND '.join(person)})"
    texts = [t for t in (criteria.name, criteria.description) if t]
    if texts and criteria.age_min is None and criteria.age_max is None:
        sql = f"({sql}) OR (" + " AND ".join(f"{_FREE_TEXT} ILIKE %s" for _ in texts) + ")"
        params += [_like(t) for t in texts]
    # Only the constant fragments above are SQL; every search term is a parameter.
    return Observation.objects.alias(
        names_subject=RawSQL(sql, params, output_field=BooleanField())  # noqa: S611
    ).filter(names_subject=True)


def subject_records(
    criteria: SubjectCriteria, *, limit: int, after: uuid.UUID | None = None
) -> tuple[list[dict], bool]:
    qs = subjects_search(criteria).select_related("organisation", "author", "area").order_by("id")
    if after is not None:
        qs = qs.filter(id__gt=after)
    found = list(qs[: limit + 1])
    return [_subject_view(o) for o in found[:limit]], len(found) > limit


def _subject_view(o: Observation) -> dict[str, Any]:
    return {
        "type": "observation", "id": str(o.id), "version": o.version,
        "observed_at": o.observed_at.isoformat(), "created_at": o.created_at.isoformat(),
        "qualifier": o.qualifier, "incident_type": o.incident_type,
        "organisation": o.organisation.name, "author": o.author.get_username(),
        "area": o.area.name if o.area else None, "review_state": o.review_state,
        "processing_restricted": o.processing_restricted,
        "deleted_at": o.deleted_at.isoformat() if o.deleted_at else None,
        "location": [o.location.x, o.location.y],
        "description": o.description, "persons_involved": o.persons_involved, "photos": list(o.photos),
    }


# --- retention ---------------------------------------------------------------------------

# The time retention counts from, per record type.
RETENTION_CLOCK = {"observation": "observed_at", "street_audit": "created_at", "audit_item": "created_at"}


def retention_days(record_type: str) -> int | None:
    """An admin's RetentionPeriod for the type, else settings.RETENTION_PERSONAL_DAYS."""
    days = RetentionPeriod.objects.filter(record_type=record_type).values_list("personal_days", flat=True).first()
    return days if days is not None else settings.RETENTION_PERSONAL_DAYS.get(record_type)


def retention_cutoff(record_type: str, *, now: datetime | None = None) -> datetime | None:
    days = retention_days(record_type)
    if days is None:
        return None
    return (now or timezone.now()) - timedelta(days=days)


def retention_due(record_type: str, personal: list[str], cutoff: datetime) -> QuerySet:
    """Records past the cutoff that still hold a personal value, oldest first."""
    model = RECORD_MODELS[record_type]
    held = Q()
    for name in personal:
        held |= ~Q(**{name: [] if name in ("photos", "persons_involved") else ""})
    clock = RETENTION_CLOCK[record_type]
    return model.objects.filter(held, **{f"{clock}__lt": cutoff}).order_by(clock, "id")


# --- escalation ----------------------------------------------------------------------------

ESCALATION_SCHEMA = "fieldsync.escalation/1"


def escalation_payload(escalation, record) -> dict[str, Any]:
    """The JSON form POSTed to a partner (docs/escalation.md), from the record as it is
    now: personal fields only those decided (and logged) when the escalation was made."""
    record_type = escalation.record_type
    point = record.location
    bng = Point(point.x, point.y, srid=point.srid or 4326)
    bng.transform(BNG_SRID)
    if record_type == "observation":
        categories = {"qualifier": record.qualifier, "incident_type": record.incident_type}
        at = record.observed_at
    else:
        categories = {"issue_type": record.issue_type, "grade": record.grade}
        at = record.created_at
    body: dict[str, Any] = {
        "schema": ESCALATION_SCHEMA,
        "escalation_id": str(escalation.pk),
        "kind": escalation.endpoint.kind,
        "record": {
            "type": record_type, "id": str(record.id), "version": record.version,
            "categories": categories,
            "time": at.isoformat(),
            "recorded_at": record.created_at.isoformat(),
            "location": {
                "wgs84": {"longitude": round(point.x, 6), "latitude": round(point.y, 6)},
                # 0.1 m: far finer than the fix itself (accuracy_m).
                "bng": {"easting": round(bng.x, 1), "northing": round(bng.y, 1)},
                "accuracy_m": record.accuracy_m, "fix_source": record.fix_source,
            },
            "area": {"code": record.area.code, "name": record.area.name} if record.area_id else None,
            "review_state": getattr(record, "review_state", None) or _audit_state(record),
        },
        "reporter": {
            "organisation": {"name": record.organisation.name, "slug": record.organisation.slug,
                             "kind": record.organisation.kind},
        },
        "escalated_by": {
            "organisation": _organisation(escalation.requested_by),
            "purpose": escalation.purpose,
        },
        "personal_data_included": bool(escalation.personal_fields),
        "fieldsync_url": escalation_record_url(record_type, record),
    }
    if record_type == "observation":
        body["record"]["action_taken"] = list(record.action_taken)
        if "description" in escalation.personal_fields:
            body["record"]["description"] = record.description
        if "persons_involved" in escalation.personal_fields:
            body["record"]["persons"] = [
                {k: p.get(k) for k in ("name", "description", "approx_age") if k in p}
                for p in record.persons_involved if isinstance(p, dict)
            ]
    else:
        body["record"]["street_audit"] = str(record.street_audit_id)
        body["record"]["responsible_agency"] = record.responsible_agency
        body["record"]["notes"] = record.notes
    return body


def _audit_state(record) -> str | None:
    audit = getattr(record, "street_audit", None)
    return audit.review_state if audit else None


def _organisation(user) -> dict | None:
    org = getattr(user, "organisation", None)
    return {"name": org.name, "slug": org.slug, "kind": org.kind} if org else None


def escalation_record_url(record_type: str, record) -> str:
    """The record on the review desk (an audit item: its audit's page)."""
    if record_type == "audit_item":
        path = reverse("review_desk:record", args=["street_audit", record.street_audit_id])
    else:
        path = reverse("review_desk:record", args=[record_type, record.id])
    return settings.FIELDSYNC_BASE_URL.rstrip("/") + path


def escalation_record(record_type: str, record_id) -> Any:
    model = RECORD_MODELS.get(record_type)
    if model is None:
        return None
    return model.objects.select_related("organisation", "area").filter(pk=record_id).first()
