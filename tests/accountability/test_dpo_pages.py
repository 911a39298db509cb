"""The DPO's pages (/dpo/): the access log with its filters, keyset pages and each entry's
chain status (broken after a row is tampered with in PostgreSQL), the chain verification run
by the worker with its result kept, subject access and its export, and rectify / restrict /
erase with a reason and a confirmation. Every read logged as the API logs it; bad input a
400 page, never a 500; nobody but the DPO (admins and superusers included) gets past the 403
page; forms refused without their CSRF token."""
from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.accountability.conftest import JANE
from tests.accountability.test_chain import TABLE, without_trigger
from warden_app.accountability import tasks
from warden_app.accountability.services.access_log import access_log_seal
from warden_app.dpo_pages import views
from warden_app.models import AccessLogEntry, Observation, User
from warden_app.services.access_log import access_log_records

LOG = "/dpo/"
SUBJECTS = "/dpo/subjects/"
VERIFICATION = "/dpo/verification/"
NOT_DPO = ["admin", "analyst", "supervisor_leigh", "warden_leigh", "partner_fire"]


def signed_in(world, username: str, **options) -> Client:
    client = Client(**options)
    client.force_login(world.users[username] if username in world.users else User.objects.get(username=username))
    return client


def page_reads(user, via: str) -> list[AccessLogEntry]:
    return list(AccessLogEntry.objects.filter(actor=user, action="consultation", details__via=via).order_by("id"))


def shown(response) -> list[int]:
    return [e["id"] for e in response.context["entries"]]


@pytest.fixture
def logged(world):
    record = world.observe(persons_involved=[JANE], description="Jane Doe shouting at the bus stop")
    other = world.observe(persons_involved=[{"name": "Sam Roe", "approx_age": 16}], description="ball games")
    users = world.users
    rows = {
        "supervisor_read": access_log_records(user=users["supervisor_leigh"], action="consultation",
                                              record_type="observation", record_ids=[record], purpose="weekly review"),
        "analyst_export": access_log_records(user=users["analyst"], action="disclosure", record_type="observation",
                                             record_ids=[record, other], recipient="analyst (export file)",
                                             purpose="Hotspot study Q3"),
        "analyst_read": access_log_records(user=users["analyst"], action="consultation",
                                           record_type="observation", record_ids=[other]),
    }
    return {"record": record, "other": other, "rows": rows}


@pytest.fixture
def dpo(world):
    return signed_in(world, "dpo")


# --- the access log ------------------------------------------------------------------------


def test_the_log_newest_first_and_the_read_is_logged(world, logged, dpo):
    expected = list(AccessLogEntry.objects.order_by("-id").values_list("id", flat=True))
    response = dpo.get(LOG)
    assert response.status_code == 200
    assert shown(response) == expected
    html = response.content.decode()
    assert "analyst (export file)" in html and "Hotspot study Q3" in html
    [read] = page_reads(world.users["dpo"], "dpo_pages.access_log")
    assert read.record_type == "access_log" and read.record_ids == [] and read.details["entries"] == expected
    assert read.details["filter"] == {}
    # The next read shows that read at the top.
    assert shown(dpo.get(LOG))[0] == read.pk


def test_filters_by_person_record_action_purpose_and_date(world, logged, dpo):
    rows = logged["rows"]
    assert shown(dpo.get(LOG, {"actor": "analyst"})) == [rows["analyst_read"].pk, rows["analyst_export"].pk]
    assert shown(dpo.get(LOG, {"actor": str(world.users["analyst"].pk)}))[0] == rows["analyst_read"].pk
    about = shown(dpo.get(LOG, {"record": logged["record"]}))
    assert rows["supervisor_read"].pk in about and rows["analyst_export"].pk in about
    assert rows["analyst_read"].pk not in about
    assert shown(dpo.get(LOG, {"action": "disclosure"})) == [rows["analyst_export"].pk]
    assert shown(dpo.get(LOG, {"purpose": "hotspot"})) == [rows["analyst_export"].pk]  # case-insensitive
    assert shown(dpo.get(LOG, {"record_type": "observation", "actor": "supervisor_leigh"})) == [
        rows["supervisor_read"].pk]
    today = timezone.localdate()
    assert rows["analyst_read"].pk in shown(dpo.get(LOG, {"from": today.isoformat(), "to": today.isoformat()}))
    assert shown(dpo.get(LOG, {"from": (today + timedelta(days=1)).isoformat()})) == []
    assert shown(dpo.get(LOG, {"to": (today - timedelta(days=1)).isoformat()})) == []
    # The filter is logged as the API logs it; a typed purpose only as "(text search)".
    reads = page_reads(world.users["dpo"], "dpo_pages.access_log")
    assert reads[0].details["filter"] == {"actor": "analyst"}
    purpose_read = next(r for r in reads if "purpose_contains" in r.details["filter"])
    assert purpose_read.details["filter"] == {"purpose_contains": "(text search)"}
    assert "hotspot" not in json.dumps([r.details for r in reads]).lower()


def test_keyset_pages_follow_on_without_gaps_and_without_offset(world, logged, dpo, monkeypatch):
    for n in range(5):
        access_log_records(user=world.users["analyst"], action="consultation", record_type="observation",
                           record_ids=[logged["other"]], purpose=f"page test {n}")
    monkeypatch.setattr(views, "LOG_PAGE", 2)
    expected = list(AccessLogEntry.objects.filter(actor=world.users["analyst"]).order_by("-id")
                    .values_list("id", flat=True))
    seen, url, pages = [], LOG + "?actor=analyst", 0
    while url:
        with CaptureQueriesContext(connection) as queries:
            response = dpo.get(url)
        assert response.status_code == 200
        page_sql = [q["sql"] for q in queries if "warden_app_accesslogentry" in q["sql"] and "LIMIT 3" in q["sql"]]
        assert page_sql and all("OFFSET" not in sql for sql in page_sql)
        seen += shown(response)
        url = LOG + response.context["older"] if response.context["older"] else None
        pages += 1
    assert seen == expected and pages == 4
    assert "before=" in dpo.get(LOG + "?actor=analyst").context["older"]


FULLWIDTH_UUID = "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18-1234-1234-1234-123456789012"
ARABIC_INDIC_DATE = "\u0662\u0660\u0662\u0666-\u0660\u0661-\u0660\u0661"


@pytest.mark.parametrize("params", [
    {"actor": "nobody"}, {"actor": "ü" * 40}, {"actor": "x" * 100_000}, {"actor": "9" * 40},
    {"actor": "a\x00b"}, {"record": "nope"}, {"record": FULLWIDTH_UUID},
    {"record": "{12345678-1234-1234-1234-123456789012}"}, {"from": "last tuesday"}, {"from": "2026-02-30"},
    {"to": "99999-01-01"}, {"from": "2026-01-02", "to": "2026-01-01"}, {"from": ARABIC_INDIC_DATE},
    {"action": "peek"}, {"record_type": "<script>"}, {"before": "-1"}, {"before": "9" * 30}, {"before": "1e3"},
    {"purpose": "p" * 5000}, {"purpose": "a\x00b"}, {"purpose": "line\nbreak"},
])
def test_hostile_filters_are_a_400_page(world, logged, dpo, params):
    response = dpo.get(LOG, params)
    assert response.status_code == 400
    assert "That could not be done" in response.content.decode()
    assert not page_reads(world.users["dpo"], "dpo_pages.access_log")


def test_one_entry_in_full_and_its_read_logged(world, logged, dpo):
    entry = logged["rows"]["analyst_export"]
    response = dpo.get(reverse("dpo_pages:entry", args=[entry.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "analyst (export file)" in html and logged["other"] in html and "Awaiting seal" in html
    [read] = page_reads(world.users["dpo"], "dpo_pages.access_log_entry")
    assert read.details["entries"] == [entry.pk] and read.record_ids == []
    for missing in (entry.pk + 10_000, 2**63 - 1, 10**30):
        assert dpo.get(f"/dpo/entries/{missing}/").status_code == 404


# --- chain status ------------------------------------------------------------------------


def statuses(response) -> dict[int, str]:
    return {e["id"]: e["status"].state for e in response.context["entries"]}


def test_a_row_tampered_with_in_postgresql_shows_broken(world, logged, dpo):
    access_log_seal()
    chain = list(AccessLogEntry.objects.filter(seq__isnull=False).order_by("seq").values_list("id", "seq"))
    assert len(chain) >= 4
    before = statuses(dpo.get(LOG))
    assert {before[i] for i, _ in chain} == {"sealed"}  # sealed, own link checked, no full run yet
    unsealed = AccessLogEntry.objects.filter(seq__isnull=True).values_list("id", flat=True)
    assert {before.get(i) for i in unsealed} <= {"unsealed", None}

    victim_id, victim_seq = chain[2]
    without_trigger(f"UPDATE {TABLE} SET purpose = 'nothing to see' WHERE id = %s", [victim_id])
    response = dpo.get(LOG)
    after = statuses(response)
    assert after[victim_id] == "broken"  # found at once, without a full verification
    assert [after[i] for i, seq in chain if seq != victim_seq] == ["sealed"] * (len(chain) - 1)
    assert "altered" in next(e for e in response.context["entries"] if e["id"] == victim_id)["status"].note
    assert "Broken" in response.content.decode()

    # The full verification, run as the worker runs it, breaks the chain from there on.
    assert tasks.access_log_verify_task.apply(kwargs={"requested_by": "dpo"}).get() is False
    response = dpo.get(LOG)
    after = statuses(response)
    assert [after[i] for i, seq in chain if seq < victim_seq] == ["verified"] * (victim_seq - 1)
    assert {after[i] for i, seq in chain if seq >= victim_seq} == {"broken"}
    html = response.content.decode()
    assert "Chain broken" in html and f"at seq {victim_seq}" in html
    page = dpo.get(VERIFICATION).content.decode()
    assert "Broken" in page and f"row {victim_id}" in page and "altered" in page


def test_a_deleted_sealed_row_breaks_the_next_ones_link(world, logged, dpo):
    access_log_seal()
    chain = list(AccessLogEntry.objects.filter(seq__isnull=False).order_by("seq").values_list("id", "seq"))
    gone_id, gone_seq = chain[1]
    without_trigger(f"DELETE FROM {TABLE} WHERE id = %s", [gone_id])
    response = dpo.get(LOG)
    entry = next(e for e in response.context["entries"] if e["seq"] == gone_seq + 1)
    assert entry["status"].state == "broken" and f"seq {gone_seq} is missing" in entry["status"].note


# --- the verification -------------------------------------------------------------------


def test_verification_runs_in_the_worker_and_its_result_is_shown(world, logged, dpo, settings, tmp_path,
                                                                   monkeypatch):
    settings.ACCESS_LOG_ANCHOR = f"file://{tmp_path}/anchors.log"
    access_log_seal()
    assert "has not been verified yet" in dpo.get(VERIFICATION).content.decode()
    queued = []
    monkeypatch.setattr(tasks.access_log_verify_task, "apply_async",
                        lambda **kw: queued.append(kw) or tasks.access_log_verify_task.apply(**kw))
    response = dpo.post(VERIFICATION)
    assert response.status_code == 302 and queued == [{"kwargs": {"requested_by": "dpo"}, "retry": False}]
    page = dpo.get(VERIFICATION).content.decode()
    head = AccessLogEntry.objects.filter(seq__isnull=False).order_by("-seq").values_list("seq", "hash").first()
    assert "Chain verified" in page and f"through seq {head[0]}" in page and head[1] in page
    assert f"file://{tmp_path}/anchors.log" in page and "1 head, the last at seq" in page
    assert "asked for by dpo" in page
    log_page = dpo.get(LOG)
    assert {s for i, s in statuses(log_page).items()
            if AccessLogEntry.objects.get(pk=i).seq is not None} == {"verified"}


def test_a_second_request_while_one_runs_is_not_queued(world, dpo, monkeypatch):
    queued = []
    monkeypatch.setattr(tasks.access_log_verify_task, "apply_async", lambda **kw: queued.append(kw))
    dpo.post(VERIFICATION)
    response = dpo.post(VERIFICATION, follow=True)
    assert len(queued) == 1 and "already running" in response.content.decode()
    assert "Verification running" in response.content.decode()


# --- subject access ------------------------------------------------------------------------


def test_subject_access_by_post_with_its_purpose_logged_not_the_name(world, logged, dpo):
    assert 'method="post"' in dpo.get(SUBJECTS).content.decode()
    response = dpo.post(SUBJECTS, {"name": "jane", "purpose": "SAR-2026-014"})
    assert response.status_code == 200
    assert [r["id"] for r in response.context["records"]] == [logged["record"]]
    html = response.content.decode()
    assert "Jane Doe" in html and "red coat, tall" in html and "Rectify" in html and "Erase personal data" in html
    [read] = page_reads(world.users["dpo"], "dpo_pages.subjects")
    assert read.record_ids == [uuid.UUID(logged["record"])] and read.purpose == "SAR-2026-014"
    assert read.details["criteria"] == ["name"] and "jane" not in json.dumps(read.details).lower()
    # Free text too, as the service defines it: "bus stop" is in the description only.
    found = dpo.post(SUBJECTS, {"description": "bus stop", "purpose": "SAR-2026-014"}).context["records"]
    assert [r["id"] for r in found] == [logged["record"]]
    assert [r["id"] for r in dpo.post(SUBJECTS, {"age": "16", "purpose": "x"}).context["records"]] == [
        logged["other"]]


@pytest.mark.parametrize("form", [
    {"name": "jane"}, {"purpose": "SAR-1"}, {"name": "j", "purpose": "SAR-1"}, {"age": "old", "purpose": "SAR-1"},
    {"age": "٣٤", "purpose": "SAR-1"}, {"name": "jane", "purpose": "SAR-1", "after": "nope"},
    {"name": "n" * 5000, "purpose": "SAR-1"}, {"name": "ja\x00ne", "purpose": "SAR-1"},
    {"name": "jane", "purpose": "p\x00"},
])
def test_bad_subject_searches_are_a_400_page(world, logged, dpo, form):
    response = dpo.post(SUBJECTS, form)
    assert response.status_code == 400 and "That could not be done" in response.content.decode()
    assert not page_reads(world.users["dpo"], "dpo_pages.subjects")


def test_subject_results_page_on_by_post(world, logged, dpo, monkeypatch):
    third = world.observe(persons_involved=[{"name": "Jane Smith"}])
    monkeypatch.setattr(views, "SUBJECTS_PAGE", 1)
    seen, form = [], {"name": "jane", "purpose": "SAR-3"}
    while True:
        response = dpo.post(SUBJECTS, form)
        seen += [r["id"] for r in response.context["records"]]
        if not response.context["more"]:
            break
        form = {**form, "after": response.context["next_after"]}
    assert sorted(seen) == sorted([logged["record"], third])


def test_the_export_holds_every_match_and_is_logged(world, logged, dpo):
    response = dpo.post(reverse("dpo_pages:subjects_export"), {"name": "jane", "purpose": "SAR-9"})
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith('attachment; filename="subject-access-')
    body = json.loads(response.content)
    assert [r["id"] for r in body["records"]] == [logged["record"]]
    assert body["records"][0]["persons_involved"] == [JANE] and body["purpose"] == "SAR-9"
    [read] = page_reads(world.users["dpo"], "dpo_pages.subjects_export")
    assert read.record_ids == [uuid.UUID(logged["record"])] and read.purpose == "SAR-9"
    assert dpo.get(reverse("dpo_pages:subjects_export")).status_code == 405


# --- rectify, restrict, erase --------------------------------------------------------------


def action_url(name: str, record_id: str) -> str:
    return reverse(f"dpo_pages:{name}", args=["observation", record_id])


def rectify_form(**extra) -> dict:
    return {
        "description": "Someone shouting at the bus stop", "persons": "2",
        "person-0-original": json.dumps(JANE), "person-0-name": "Jane Dough", "person-0-description": "red coat, tall",
        "person-0-approx_age": "34", "person-1-original": "{}", "person-1-name": "",
        "justification": "SAR-2026-014: the subject's name was misspelt", "confirm": "yes", **extra,
    }


def test_rectify_with_a_reason_and_confirmation(world, logged, dpo):
    record = logged["record"]
    response = dpo.post(action_url("rectify", record), rectify_form(name="jane", purpose="SAR-2026-014"))
    assert response.status_code == 200
    obs = Observation.objects.get(pk=record)
    assert obs.description == "Someone shouting at the bus stop"
    assert obs.persons_involved == [{"name": "Jane Dough", "description": "red coat, tall", "approx_age": 34}]
    row = AccessLogEntry.objects.filter(action="alteration", record_ids__contains=[record]).get()
    assert row.actor == world.users["dpo"] and row.purpose.startswith("SAR-2026-014")
    assert row.details["rectified"] == ["description", "persons_involved"] and "Dough" not in json.dumps(row.details)
    html = response.content.decode()
    assert "Corrected: description, persons_involved" in html and f"entry {row.pk}" in html
    assert "Back to the search results" in html  # the search travels on in the form, not the URL


def test_a_person_can_be_removed_and_added(world, logged, dpo):
    form = rectify_form(**{"person-0-remove": "yes", "person-1-name": "Ann Other", "person-1-approx_age": "about 40"})
    assert dpo.post(action_url("rectify", logged["record"]), form).status_code == 200
    assert Observation.objects.get(pk=logged["record"]).persons_involved == [
        {"name": "Ann Other", "approx_age": "about 40"}]


@pytest.mark.parametrize("change", [
    {"confirm": ""}, {"justification": ""}, {"justification": "x" * 5000}, {"persons": "many"},
    {"persons": "9999"}, {"person-0-original": "[1, 2]"}, {"person-0-original": "{not json"},
    {"person-0-original": json.dumps({"nested": {"a": 1}})}, {"description": "d" * 5000},
    {"person-0-name": "a\x00b"},
])
def test_a_bad_rectification_is_a_400_page_and_changes_nothing(world, logged, dpo, change):
    response = dpo.post(action_url("rectify", logged["record"]), rectify_form(**change))
    assert response.status_code == 400 and "Nothing was changed" in response.content.decode()
    assert Observation.objects.get(pk=logged["record"]).persons_involved == [JANE]
    assert not AccessLogEntry.objects.filter(action="alteration").exists()


def test_unknown_records_and_types(world, logged, dpo):
    assert dpo.post(action_url("rectify", str(uuid.uuid4())), rectify_form()).status_code == 404
    url = reverse("dpo_pages:restrict", args=["street_audit", logged["record"]])
    assert dpo.post(url, {"restricted": "true", "justification": "x", "confirm": "yes"}).status_code == 400
    assert dpo.get(action_url("rectify", logged["record"])).status_code == 405


def test_restrict_and_lift(world, logged, dpo):
    record = logged["record"]
    form = {"restricted": "true", "justification": "Art. 18: accuracy contested", "confirm": "yes"}
    response = dpo.post(action_url("restrict", record), form)
    assert response.status_code == 200 and "Processing restricted" in response.content.decode()
    assert Observation.objects.get(pk=record).processing_restricted
    row = AccessLogEntry.objects.filter(action="alteration", record_ids__contains=[record]).get()
    assert row.details["restriction"] == "applied" and row.purpose == "Art. 18: accuracy contested"
    # Shown restricted in subject access, with "lift" offered.
    html = dpo.post(SUBJECTS, {"name": "jane", "purpose": "SAR-1"}).content.decode()
    assert "Processing restricted" in html and "Lift the restriction" in html
    assert dpo.post(action_url("restrict", record), {**form, "restricted": "false"}).status_code == 200
    assert not Observation.objects.get(pk=record).processing_restricted
    assert dpo.post(action_url("restrict", record), {**form, "restricted": "maybe"}).status_code == 400


def test_erase_chosen_fields(world, logged, dpo):
    record = logged["record"]
    form = {"fields": ["description", "persons_involved"], "justification": "Art. 17 request SAR-7", "confirm": "yes"}
    response = dpo.post(action_url("erase", record), form)
    assert response.status_code == 200
    obs = Observation.objects.get(pk=record)
    assert obs.description == "" and obs.persons_involved == []
    row = AccessLogEntry.objects.filter(action="erasure", record_ids__contains=[record]).get()
    assert row.purpose == "Art. 17 request SAR-7" and sorted(row.details["fields"]) == ["description",
                                                                                       "persons_involved"]
    assert f"entry {row.pk}" in response.content.decode()
    for bad in ({**form, "fields": ["qualifier"]}, {**form, "fields": []}, {**form, "confirm": "no"}):
        assert dpo.post(action_url("erase", logged["other"]), bad).status_code == 400
    assert Observation.objects.get(pk=logged["other"]).description == "ball games"


# --- who may ------------------------------------------------------------------------------


@pytest.mark.parametrize("username", [*NOT_DPO, "root"])
def test_nobody_but_the_dpo_gets_in(world, logged, username):
    if username == "root":
        User.objects.create_superuser("root", password="fieldsync-demo")
    client = signed_in(world, username)
    record = logged["record"]
    for url in (LOG, VERIFICATION, SUBJECTS, reverse("dpo_pages:entry", args=[logged["rows"]["analyst_read"].pk])):
        response = client.get(url)
        assert response.status_code == 403 and "Data protection is not open to you" in response.content.decode()
    posts = [
        (SUBJECTS, {"name": "jane", "purpose": "SAR-1"}),
        (reverse("dpo_pages:subjects_export"), {"name": "jane", "purpose": "SAR-1"}),
        (VERIFICATION, {}),
        (action_url("rectify", record), rectify_form()),
        (action_url("restrict", record), {"restricted": "true", "justification": "x", "confirm": "yes"}),
        (action_url("erase", record), {"fields": ["description"], "justification": "x", "confirm": "yes"}),
    ]
    for url, form in posts:
        assert client.post(url, form).status_code == 403
    obs = Observation.objects.get(pk=record)
    assert obs.persons_involved == [JANE] and not obs.processing_restricted and obs.description
    assert not AccessLogEntry.objects.filter(action__in=["alteration", "erasure"]).exists()
    assert not AccessLogEntry.objects.filter(details__via__startswith="dpo_pages").exists()


def test_anonymous_is_sent_to_sign_in(world, logged):
    response = Client().get(LOG + "?action=erasure")
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")
    assert Client().post(action_url("erase", logged["record"]), {}).status_code == 302


def test_forms_need_their_csrf_token(world, logged):
    client = signed_in(world, "dpo", enforce_csrf_checks=True)
    record = logged["record"]
    assert client.post(action_url("erase", record), {"fields": ["description"], "justification": "x",
                                                     "confirm": "yes"}).status_code == 403
    assert client.post(SUBJECTS, {"name": "jane", "purpose": "SAR-1"}).status_code == 403
    assert Observation.objects.get(pk=record).description
    assert not AccessLogEntry.objects.filter(details__via__startswith="dpo_pages").exists()
