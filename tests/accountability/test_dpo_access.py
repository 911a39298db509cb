"""The DPO reads the access log, through the API and a read-only admin; nobody else does
(admins and superusers included); and each read of the log is itself logged."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from warden_app.models import AccessLogEntry, User
from warden_app.services.access_log import access_log_records

URL = "/api/v1/dpo/access-log"


def consultations_of_log(user) -> list[AccessLogEntry]:
    return list(AccessLogEntry.objects.filter(action="consultation", record_type="access_log", actor=user)
                .order_by("id"))


@pytest.fixture
def logged(world):
    """A few rows by different people about different records (plus the pushes' own)."""
    record = world.observe()
    other = world.observe()
    users = world.users
    rows = {
        "supervisor_read": access_log_records(user=users["supervisor_leigh"], action="consultation",
                                              record_type="observation", record_ids=[record], purpose="review"),
        "analyst_export": access_log_records(user=users["analyst"], action="disclosure", record_type="observation",
                                             record_ids=[record, other], recipient="analyst (export file)"),
        "analyst_read": access_log_records(user=users["analyst"], action="consultation",
                                           record_type="observation", record_ids=[other]),
    }
    return {"record": record, "other": other, "rows": rows}


def test_dpo_filters_the_log_by_person_record_action_and_time(world, logged):
    dpo = world.client("dpo")
    by_analyst = dpo.get(URL, {"actor": "analyst", "purpose": "audit 7"}).json()["results"]
    assert [r["id"] for r in by_analyst] == [logged["rows"]["analyst_read"].pk, logged["rows"]["analyst_export"].pk]
    assert by_analyst[1]["recipient"] == "analyst (export file)" and by_analyst[1]["actor"]["username"] == "analyst"

    about_record = dpo.get(URL, {"record": logged["record"]}).json()["results"]
    ids = {r["id"] for r in about_record}
    assert {logged["rows"]["supervisor_read"].pk, logged["rows"]["analyst_export"].pk} <= ids
    assert logged["rows"]["analyst_read"].pk not in ids
    assert all(logged["record"] in r["record_ids"] for r in about_record)
    # The push that collected it is there too.
    assert any(r["action"] == "collection" for r in about_record)

    disclosures = dpo.get(URL, {"action": "disclosure"}).json()["results"]
    assert [r["id"] for r in disclosures] == [logged["rows"]["analyst_export"].pk]

    today = timezone.localdate().isoformat()
    assert dpo.get(URL, {"from": today, "to": today, "actor": "analyst"}).json()["results"]
    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()
    assert dpo.get(URL, {"from": tomorrow}).json()["results"] == []
    for bad in ({"action": "peek"}, {"record": "nope"}, {"from": "last tuesday"}, {"actor": "nobody"},
                {"limit": "0"}):
        response = dpo.get(URL, bad)
        assert response.status_code == 400, bad
        assert response.json()["code"] == "invalid"


def test_pages_follow_on_without_gaps(world, logged):
    dpo = world.client("dpo")
    seen, url, pages = [], URL + "?limit=2&action=consultation&record_type=observation", 0
    while url:
        body = dpo.get(url).json()
        seen += [r["id"] for r in body["results"]]
        url, pages = body["next"], pages + 1
    expected = list(AccessLogEntry.objects.filter(action="consultation", record_type="observation")
                    .order_by("-id").values_list("id", flat=True))
    assert seen == expected and pages >= 1
    assert len(expected) >= 2


def test_reading_the_log_is_itself_logged(world, logged):
    dpo_user = world.users["dpo"]
    shown = [r["id"] for r in world.client("dpo").get(URL, {"actor": "analyst", "purpose": "SAR-12"}).json()["results"]]
    [entry] = consultations_of_log(dpo_user)
    assert entry.purpose == "SAR-12" and entry.record_ids == []
    assert entry.details["entries"] == shown
    assert entry.details["filter"] == {"actor": "analyst"}
    assert entry.details["via"] == "api.dpo.access_log"
    # …and the next read shows that row too: reading the log leaves a trace in it.
    latest = world.client("dpo").get(URL, {"record_type": "access_log"}).json()["results"]
    assert latest[0]["id"] == entry.pk


@pytest.mark.parametrize("username", ["admin", "analyst", "supervisor_leigh", "warden_leigh", "partner_fire", None])
def test_nobody_but_the_dpo_reads_the_log(world, logged, username):
    response = world.client(username).get(URL)
    assert response.status_code in (401, 403)
    assert not AccessLogEntry.objects.filter(record_type="access_log").exists()


def test_a_superuser_is_no_dpo(world, logged):
    root = User.objects.create_superuser("root", password="fieldsync-demo")
    assert world.client("root").get(URL).status_code == 403
    client = world.client(None)
    client.force_login(root)
    assert client.get(reverse("admin:warden_app_accesslogentry_changelist")).status_code == 403


def test_dpo_reads_the_log_in_the_admin_and_cannot_change_it(world, logged, client):
    dpo = world.users["dpo"]
    assert dpo.is_staff  # the demo DPO can sign in to the admin, where only the log is open
    client.force_login(dpo)
    index = client.get(reverse("admin:index")).content.decode()
    assert "Access log" in index or "access log" in index
    assert "Observations" not in index and "Users" not in index

    changelist = reverse("admin:warden_app_accesslogentry_changelist")
    response = client.get(changelist, {"q": logged["record"]})
    assert response.status_code == 200
    shown = [entry.pk for entry in response.context["cl"].result_list]
    assert logged["rows"]["supervisor_read"].pk in shown and logged["rows"]["analyst_read"].pk not in shown
    [read] = consultations_of_log(dpo)
    assert read.details["entries"] == shown and read.details["via"] == "admin.access_log"

    entry = logged["rows"]["analyst_export"]
    change = reverse("admin:warden_app_accesslogentry_change", args=[entry.pk])
    page = client.get(change)
    assert page.status_code == 200 and 'name="purpose"' not in page.content.decode()  # read-only
    assert consultations_of_log(dpo)[-1].details["entries"] == [entry.pk]

    assert client.post(change, {"purpose": "edited"}).status_code == 403
    assert client.post(reverse("admin:warden_app_accesslogentry_delete", args=[entry.pk]),
                       {"post": "yes"}).status_code == 403
    assert client.get(reverse("admin:warden_app_accesslogentry_add")).status_code == 403
    assert AccessLogEntry.objects.get(pk=entry.pk).purpose == ""


def test_the_admin_role_cannot_open_the_log_pages(world, logged, client):
    client.force_login(world.users["admin"])
    assert "access log" not in client.get(reverse("admin:index")).content.decode().lower()
    entry = logged["rows"]["analyst_read"]
    for url in (reverse("admin:warden_app_accesslogentry_changelist"),
                reverse("admin:warden_app_accesslogentry_change", args=[entry.pk])):
        assert client.get(url).status_code == 403
    assert not AccessLogEntry.objects.filter(record_type="access_log").exists()


def test_record_search_in_the_admin_matches_whole_ids_only(world, logged, client):
    client.force_login(world.users["dpo"])
    wanted = str(uuid.uuid4())
    response = client.get(reverse("admin:warden_app_accesslogentry_changelist"), {"q": wanted})
    assert response.status_code == 200 and list(response.context["cl"].result_list) == []
    client.get(reverse("admin:warden_app_accesslogentry_changelist"), {"q": "Jane Doe"})
    reads = consultations_of_log(world.users["dpo"])
    assert [r.details["filter"]["q"] for r in reads] == [wanted, "(text search)"]  # typed text is not kept
