"""Every answer that can carry a personal field is scoped, redacted and logged (s.62).

The authorisation matrix (test_authorization_matrix.py) holds a row for every route of the
URL map and fails when one is missing. Here every one of its requests is sent again, as
every principal, with every personal value of the world known in advance: each
observation's description and persons involved, each conflict's device and server values,
each refused mutation's payload, each stored photo's bytes. Whatever answer carries one of
them must (1) be one the principal may see (the matrix's product.md oracle: scope and
redaction) and (2) have written, in the same request, an access-log row by that principal
naming the record it belongs to. A new route is covered the day it gets its matrix row;
a new engine answer, the day it decides visibility (test_every_redaction_decision_is_probed).

The world adds a warden who is in two teams (Leigh and Wigan), with a conflict and a refused
mutation in each area: the Leigh supervisor must see the Leigh ones and nothing of the Wigan
ones, in the sync status as on the desk.
"""
from __future__ import annotations

import ast
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import transaction
from django.urls import resolve

from tests.analysis.conftest import PASSWORD
from tests.sync.conftest import IN_LEIGH, IN_WIGAN, Handheld, mutation, observation_data

from . import test_authorization_matrix as matrix
from .conftest import SecurityWorld

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Owner:
    """Whose personal value a piece of text (or a photo) is: the record it belongs to."""

    record_id: str
    rec: matrix.Rec


def _add_two_team_warden(world: SecurityWorld) -> dict:
    """warden_both: a council warden in the Leigh team and the Wigan team, with a conflict
    and a refused mutation in each area, every value a marker of its own."""
    from fieldsync.sync.services.devices import device_enrol
    from warden_app.models import Team, User
    from warden_app.roles import Role
    from warden_app.services.roles import role_groups_ensure
    from warden_app.services.teams import team_add_member

    council = world.users["warden_leigh"].organisation
    user = User.objects.create_user(username="warden_both", password=PASSWORD, organisation=council)
    user.groups.add(role_groups_ensure()[Role.WARDEN])
    for name in ("Leigh", "Wigan"):
        team_add_member(team=Team.objects.get(name=name), user=user)

    def handheld(label: str) -> Handheld:
        enrolment = device_enrol(username="warden_both", password=PASSWORD, label=label, platform="test")
        return Handheld(token=enrolment.token, device_id=str(enrolment.device.pk))

    first, second = handheld("both-1"), handheld("both-2")
    made: dict = {"devices": (first, second)}
    for place, at in (("leigh", IN_LEIGH), ("wigan", IN_WIGAN)):
        record_id = str(uuid.uuid4())
        created = first.push_one(mutation("observation", "create", record_id, observation_data(
            at=at, description=f"PD-{place}-stored", persons_involved=[{"description": f"PD-{place}-person"}])))
        assert created["status"] == "applied", created
        # Both sides change a personal field and one that is not: redaction hides the first
        # from whoever may not see personal fields, only scope hides the second.
        assert first.push_one(mutation("observation", "update", record_id, {
            "description": f"PD-{place}-server", "incident_type": "noise"}, base_version=1))["status"] == "applied"
        answer = second.push_one(mutation("observation", "update", record_id, {
            "description": f"PD-{place}-device", "incident_type": "begging_vagrancy"}, base_version=1))
        assert answer["status"] == "conflict", answer
        refused = mutation("observation", "create", uuid.uuid4(), observation_data(
            at=at, incident_type="joyriding", description=f"PD-{place}-refused"))
        assert first.push_one(refused)["status"] == "rejected"
        made[place] = {"record": record_id, "conflict": answer["conflict_id"], "refused": refused}
    from fieldsync.sync.models import QuarantinedMutation

    for place in ("leigh", "wigan"):
        made[place]["quarantine"] = QuarantinedMutation.objects.get(
            mutation_id=made[place]["refused"]["mutation_id"]).pk
    return made


def _owners(world: SecurityWorld) -> tuple[dict[str, Owner], dict[bytes, list[Owner]]]:
    """Every personal value in the world (text ≥ 10 characters, so it cannot turn up by
    chance), and every stored photo's and thumbnail's bytes, with the records they belong to."""
    from fieldsync.sync.models import Attachment, Conflict, QuarantinedMutation
    from warden_app.models import Observation

    meta = matrix.records_meta(world)
    texts: dict[str, set[str]] = {}

    def note(text, record_id: str) -> None:
        if isinstance(text, str) and len(text) >= 10:
            texts.setdefault(text, set()).add(record_id)

    photos: dict[str, list[str]] = {}
    for o in Observation.objects.all():
        note(o.description, str(o.pk))
        for person in o.persons_involved or []:
            note(person.get("description"), str(o.pk))
        for sha in o.photos or []:
            photos.setdefault(sha, []).append(str(o.pk))
    for c in Conflict.objects.filter(record_type="observation"):
        for name in ("description", "persons_involved"):
            for side in (c.fields.get(name) or {}).values():
                note(side, str(c.record_id))
    refused: dict[str, Owner] = {}
    for q in QuarantinedMutation.objects.all():
        data = q.payload.get("data") or {}
        point = (data.get("location") or {}).get("coordinates")
        area = "leigh" if point == list(IN_LEIGH) else "wigan" if point == list(IN_WIGAN) else None
        rec = matrix.Rec(q.record_id, q.user.username, q.user.organisation.slug, area, False)
        note(data.get("description"), q.record_id)
        refused[q.record_id] = Owner(q.record_id, rec)
    # Only a value that belongs to one record tells whose it is.
    owners = {}
    for text, ids in texts.items():
        if len(ids) == 1:
            record_id = next(iter(ids))
            owner = refused.get(record_id) or (Owner(record_id, meta[record_id]) if record_id in meta else None)
            if owner:
                owners[text] = owner
    by_bytes: dict[bytes, list[Owner]] = {}
    for attachment in Attachment.objects.filter(sha256__in=photos):
        for stored in (attachment.file, attachment.thumbnail):
            if stored:
                with stored.open("rb") as handle:
                    by_bytes[handle.read()] = [Owner(i, meta[i]) for i in photos[attachment.sha256] if i in meta]
    return owners, by_bytes


def _extra_rows(world: SecurityWorld, made: dict) -> list[matrix.Row]:
    """The two-team warden's conflicts and refused mutations, asked for directly."""
    desk = matrix.desk
    rows = []
    for place, found in (("leigh", 200), ("wigan", 404)):
        rows += [
            matrix.Row("get", f"/review/conflicts/{made[place]['conflict']}/", "web", desk(found)),
            matrix.Row("get", f"/review/quarantine/{made[place]['quarantine']}/", "web", desk(found)),
            matrix.Row("get", f"/review/records/observation/{made[place]['record']}/", "web", desk(found)),
        ]
    return rows


def _check_answer(world, principal: str, body: bytes, logged: list, owners, by_bytes) -> list[str]:
    found: list[tuple[str, Owner]] = [(text, owner) for text, owner in owners.items() if text.encode() in body]
    found += [("a photo", owner) for owner in by_bytes.get(body, [])]
    user = world.users.get(matrix.USERNAME.get("analyst" if principal == "analyst_token" else principal))
    problems = []
    for what, owner in found:
        if not matrix.personal_open(principal, owner.rec):
            problems.append(f"shows {what!r} of {owner.rec.author}'s record ({owner.rec.org}, {owner.rec.area})")
            continue
        if not any(entry.actor_id == getattr(user, "pk", None) and uuid.UUID(owner.record_id) in entry.record_ids
                   for entry in logged):
            problems.append(f"shows {what!r} of record {owner.record_id} and logs no access to it")
    return problems


def _send(world, principal: str, row: matrix.Row):
    client = matrix.client_for(world, principal, row)
    data, content_type = matrix.request_data(world, principal, row)
    kwargs = {k: v for k, v in (("data", data), ("content_type", content_type)) if v is not None}
    response = getattr(client, row.method)(row.path, **kwargs)
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_every_answer_with_personal_values_is_scoped_redacted_and_logged(sec_world, settings):
    from warden_app.models import AccessLogEntry

    settings.SYNC_DEVICE_RATE = "10000/min"
    made = _add_two_team_warden(sec_world)
    owners, by_bytes = _owners(sec_world)
    assert {"PD-leigh-device", "PD-leigh-server", "PD-wigan-device", "PD-wigan-refused"} <= set(owners)
    assert by_bytes, "the world's photos are known"
    rows = matrix.matrix_rows(sec_world) + _extra_rows(sec_world, made)
    routes = {resolve(row.path.split("?")[0]).route for row in rows}
    assert not matrix.resolver_routes() - routes, "every route is asked (the matrix fails on a missing one)"

    failures, shown = [], 0
    for row in rows:
        for principal in matrix.PRINCIPALS:
            with transaction.atomic():
                last = AccessLogEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
                try:
                    body = _send(sec_world, principal, row)
                except Exception as exc:
                    failures.append(f"{row.method.upper()} {row.path} as {principal}: raised {exc!r}")
                    transaction.set_rollback(True)
                    continue
                logged = list(AccessLogEntry.objects.filter(id__gt=last))
                problems = _check_answer(sec_world, principal, body, logged, owners, by_bytes)
                shown += any(text.encode() in body for text in owners) or body in by_bytes
                failures += [f"{row.method.upper()} {row.path} as {principal}: {p}" for p in problems]
                transaction.set_rollback(True)
    print(f"personal reads: {len(rows)} rows x {len(matrix.PRINCIPALS)} principals, {shown} answers with "
          f"personal values, {len(owners)} values and {len(by_bytes)} photos known")
    assert shown > 20, "the world's personal values do reach the answers that may show them"
    assert not failures, "\n" + "\n".join(failures)


# --- the sync status and push answers, exactly --------------------------------------------------

def _status(world: SecurityWorld, username: str) -> dict:
    handheld = world.handheld(username)
    response = handheld.client.get("/api/v1/sync/status", **handheld.auth)
    assert response.status_code == 200, response.content
    return response.json()


def test_sync_status_of_a_person_in_two_teams_shows_each_supervisor_only_their_areas(sec_world):
    from warden_app.models import AccessLogEntry

    made = _add_two_team_warden(sec_world)
    before = AccessLogEntry.objects.order_by("-id").values_list("id", flat=True).first()
    status = _status(sec_world, "supervisor_leigh")
    text = json.dumps(status)
    team = {d["device_id"]: d for d in status["team_devices"]}
    second = team[made["devices"][1].device_id]
    [leigh] = [c for c in second["conflicts"] if c["id"] == made["leigh"]["record"]]
    assert leigh["fields"] == {"description": {"device": "PD-leigh-device", "server": "PD-leigh-server"},
                               "incident_type": {"device": "begging_vagrancy", "server": "noise"}}
    # The Wigan conflict is listed (the device has it open) with every value withheld: the
    # record is outside the supervisor's scope, personal field or not.
    [wigan] = [c for c in second["conflicts"] if c["id"] == made["wigan"]["record"]]
    assert wigan["fields"] == {} and wigan["withheld"] == ["description", "incident_type"]
    assert "PD-wigan" not in text and "PD-leigh-refused" not in text
    # Refused mutations: codes only, no message that could quote what was sent.
    first = team[made["devices"][0].device_id]
    assert all("message" not in p for q in first["quarantined"] for ps in q["errors"].values() for p in ps)
    [entry] = AccessLogEntry.objects.filter(id__gt=before, action="consultation")
    assert entry.actor == sec_world.users["supervisor_leigh"]
    # warden_leigh's own conflict in Leigh (the world's) is shown and logged too.
    logged = {str(i) for i in entry.record_ids}
    assert made["leigh"]["record"] in logged and made["wigan"]["record"] not in logged
    assert entry.purpose.startswith("sync status")


def test_sync_status_of_ones_own_device_shows_own_values_and_logs_them(sec_world):
    from warden_app.models import AccessLogEntry

    made = _add_two_team_warden(sec_world)
    second = made["devices"][1]
    before = AccessLogEntry.objects.order_by("-id").values_list("id", flat=True).first()
    status = second.client.get("/api/v1/sync/status", **second.auth).json()
    shown = {c["id"]: c["fields"]["description"]["device"] for c in status["conflicts"]}
    assert shown == {made["leigh"]["record"]: "PD-leigh-device", made["wigan"]["record"]: "PD-wigan-device"}
    [entry] = AccessLogEntry.objects.filter(id__gt=before, action="consultation")
    assert sorted(map(str, entry.record_ids)) == sorted([made["leigh"]["record"], made["wigan"]["record"]])
    assert str(entry.device_id) == second.device_id


def test_a_conflict_answer_is_logged_and_a_duplicate_does_not_replay_the_record(sec_world):
    from warden_app.models import AccessLogEntry

    made = _add_two_team_warden(sec_world)
    second = made["devices"][1]
    record_id = made["leigh"]["record"]
    m = mutation("observation", "update", record_id, {"description": "PD-leigh-again"}, base_version=1)
    before = AccessLogEntry.objects.order_by("-id").values_list("id", flat=True).first()
    answer = second.push_one(m)
    assert answer["status"] == "conflict" and answer["record"]["data"]["description"] == "PD-leigh-server"
    logged = list(AccessLogEntry.objects.filter(id__gt=before, action="consultation"))
    assert [[str(i) for i in e.record_ids] for e in logged] == [[record_id]]
    assert logged[0].purpose.startswith("push answer")
    again = second.push_one(m)
    assert again["status"] == "duplicate" and "record" not in again["original"]
    assert not AccessLogEntry.objects.filter(id__gt=logged[0].id, action="consultation").exists()


# --- no answer decides redaction out of the tests' sight ------------------------------------------

# Every function that decides which personal fields a reader sees, and the answers probed above
# (by route, through the matrix rows) that go through it.
PROBED_DECIDERS = {
    "fieldsync/sync/pull.py:_build_changes": "GET /api/v1/sync/pull",
    "fieldsync/sync/shown.py:record_view": "POST /api/v1/sync/push (conflict answers)",
    "fieldsync/sync/shown.py:conflict_values": "GET /api/v1/sync/status",
    "fieldsync/sync/photo_access.py:_photos_shown": "HEAD /api/v1/attachments/<sha> (an answer of 200 or 404 "
                                                    "only; its rows in the matrix), GET of the photo and its "
                                                    "/thumbnail (the bytes), and photos a push may name",
    "warden_app/sync_types.py:visible_fields": "the engine's policy hook (pull, push, status)",
    "warden_app/review_desk/selectors.py:visible_fields_of": "the desk's record, photo and conflict pages",
    "warden_app/review_desk/selectors.py:record_page": "GET /review/records/<type>/<id>/",
    "warden_app/review_desk/selectors.py:photo_in_scope": "GET /review/records/<type>/<id>/photos/<sha>[/thumb]",
    "warden_app/review_desk/selectors.py:conflict_page": "GET /review/conflicts/<id>/",
    "warden_app/analysis/selectors.py:*": "records API, exports, OGC (personal_fields_q)",
}
DECIDING = {"visible_fields", "visible_fields_of", "personal_fields_q", "personal_fields_for", "may_see_personal"}


def test_every_redaction_decision_is_probed():
    """Any function in the server's code that calls one of the redaction deciders is an
    answer that can carry personal fields: it must be listed (and so probed) above."""
    deciders = set()
    for base in ("fieldsync", "warden_app"):
        for path in (ROOT / base).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            if relative == "warden_app/permissions.py" or "/migrations/" in relative:
                continue
            tree = ast.parse(path.read_text())
            for function in ast.walk(tree):
                if not isinstance(function, ast.FunctionDef):
                    continue
                for node in ast.walk(function):
                    if isinstance(node, ast.Call):
                        name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
                        if name in DECIDING:
                            deciders.add(f"{relative}:{function.name}")
    unlisted = {d for d in deciders if d not in PROBED_DECIDERS
                and f"{d.split(':')[0]}:*" not in PROBED_DECIDERS}
    assert not unlisted, f"answers that decide redaction without a probe here: {sorted(unlisted)}"
    stale = {d for d in PROBED_DECIDERS if not d.endswith(":*") and d not in deciders}
    assert not stale, f"listed deciders that no longer exist: {sorted(stale)}"


def test_receipts_kept_before_lose_their_record_view_in_the_migration(sec_world):
    """A receipt written by an older release, record view inside, is stripped by migration
    sync 0009, so its duplicate answer shows no values."""
    import importlib

    from django.db import connection

    from fieldsync.sync.models import Receipt

    made = _add_two_team_warden(sec_world)
    second = made["devices"][1]
    m = mutation("observation", "update", made["leigh"]["record"], {"description": "PD-leigh-old"}, base_version=1)
    answer = second.push_one(m)
    receipt = Receipt.objects.get(mutation_id=m["mutation_id"])
    Receipt.objects.filter(pk=receipt.pk).update(result={**receipt.result, "record": answer["record"]})
    migration = importlib.import_module("fieldsync.sync.migrations.0009_receipts_keep_no_record_view")
    with connection.cursor() as cursor:
        cursor.execute(migration.Migration.operations[0].sql)
    again = second.push_one(m)
    assert again["status"] == "duplicate" and "record" not in again["original"]
    assert "PD-leigh" not in json.dumps(again)
