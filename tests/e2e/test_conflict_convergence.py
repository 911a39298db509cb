"""Conflicts and returns carried all the way through, in real Chromium against the live server:
handhelds (each its own browser context, so its own IndexedDB and service worker) go offline,
edit, come back and sync; a supervisor in a third context works the review desk; every
handheld ends holding what the desk decided, and PostgreSQL agrees.

The supervisor's online correction in the second test goes through the sync API (an enrolled
device's push): the desk shows and decides, it has no way to edit a field's value, and the
warden app opens another author's record read only.
"""
import uuid

import pytest

from fieldsync.sync.models import Conflict, RecordVersion
from tests.e2e.handheld_support import ARTIFACTS, DESKTOP, Handheld, new_context, phone_context, sign_in
from tests.sync.conftest import PASSWORD, now_iso
from warden_app.models import Observation, Review

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# The app's banner on a record whose change the server kept as a conflict (reason "fields").
CONFLICT_BANNER = "Someone else changed the same fields"


def handheld(browser, base_url: str, label: str) -> Handheld:
    app = Handheld(phone_context(browser), base_url).open()
    app.login("warden", PASSWORD, label=label)
    return app


def open_record(app: Handheld, record_id):
    app.go(f"#obs/{record_id}")
    app.wait_screen("observation")


def description(app: Handheld, record_id) -> str:
    open_record(app, record_id)
    facts = app.page.locator("#fact-description")  # a record this handheld may not change: shown as text
    return facts.inner_text() if facts.count() else app.page.get_by_label("Description", exact=True).input_value()


def edit(app: Handheld, record_id, text: str, check: str | None = None):
    open_record(app, record_id)
    app.page.get_by_label("Description", exact=True).fill(text)
    if check:
        app.page.get_by_label(check, exact=True).check()
    app.page.get_by_role("button", name="Save changes").click()
    app.wait_screen("home")


def last_log_entry(app: Handheld) -> str:
    """The newest sync log entry as `status: the words shown`."""
    app.go("#sync")
    app.wait_screen("sync")
    return f'{app.log_statuses()[0]}: {app.page.locator("#sync-log li").first.inner_text()}'


def needs_attention(app: Handheld) -> bool:
    app.home()
    return app.page.locator("#problems-h").count() == 1


class Desk:
    """The review desk in a desktop-sized page, driven by its links, radios and buttons."""

    def __init__(self, browser, base_url: str):
        self.base = base_url
        self.context = new_context(browser, viewport=DESKTOP)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def login(self):
        self.page.goto(f"{self.base}/review/")
        self.page.wait_for_url("**/review/login/?next=/review/")
        sign_in(self.page, "supervisor", PASSWORD, lands_on=f"{self.base}/review/")
        return self

    def screenshot(self, name: str):
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"conflict-desk-{name}.png"), full_page=True)

    def open_record_from_queue(self, record_id):
        self.page.click("header nav a:has-text('Queue')")
        self.page.wait_for_url(f"{self.base}/review/")
        self.page.click(f"tr[data-record-id='{record_id}'] a")
        self.page.wait_for_url(f"**/review/records/observation/{record_id}/")

    def decide(self, label: str, note: str = ""):
        self.page.locator("form.decision").get_by_label(label, exact=True).check()
        if note:
            self.page.fill("textarea[name=note]", note)
        with self.page.expect_navigation():
            self.page.click("form.decision button[type=submit]")

    def open_conflict(self, record_id) -> str:
        """The open conflict on the record, reached from the Conflicts list; its listed reason."""
        self.page.click("header nav a:has-text('Conflicts')")
        self.page.wait_for_url("**/review/conflicts/")
        row = self.page.locator("table.conflicts tbody tr",
                                has=self.page.locator(f"a[href*='/observation/{record_id}/']"))
        assert row.count() == 1, self.page.locator("table.conflicts").inner_text()
        reason = row.locator("td").nth(2).inner_text()
        row.get_by_role("link", name="Resolve").click()
        self.page.wait_for_url("**/review/conflicts/*/")
        return reason

    def sides(self, field: str) -> tuple[str, str]:
        cells = self.page.locator(f"tr[data-field={field}] td")
        return cells.nth(0).inner_text().strip(), cells.nth(1).inner_text().strip()

    def resolve(self, field: str, keep: str):
        self.page.locator(f"tr[data-field={field}]").get_by_label(keep).check()
        self.page.get_by_role("button", name="Resolve").click()
        self.page.locator("#conflict-resolved").wait_for()


def api_correct(browser, base_url: str, record_id, changes: dict) -> int:
    """The supervisor's correction, as any client of the sync API makes it: enrol, pull to
    learn the version, push an update on it. Answers the new version."""
    context = browser.new_context(base_url=base_url)
    try:
        api = context.request
        enrolled = api.post("/api/v1/devices/enrol", data={
            "username": "supervisor", "password": PASSWORD, "label": "Supervisor's laptop", "platform": "e2e"})
        assert enrolled.status == 201, enrolled.text()
        auth = {"Authorization": f"Bearer {enrolled.json()['token']}"}
        changes_seen, cursor = [], None
        while True:
            pulled = api.get("/api/v1/sync/pull" + (f"?cursor={cursor}" if cursor else ""), headers=auth)
            assert pulled.status == 200, pulled.text()
            page = pulled.json()
            changes_seen += page["changes"]
            cursor = page["cursor"]
            if not page["has_more"]:
                break
        seen = next(c for c in changes_seen if c["id"] == str(record_id))
        pushed = api.post("/api/v1/sync/push", headers=auth, data={"mutations": [{
            "mutation_id": str(uuid.uuid4()), "type": "observation", "op": "update", "id": str(record_id),
            "base_version": seen["version"], "client_time": now_iso(), "data": changes}]})
        assert pushed.status == 200, pushed.text()
        result = pushed.json()["results"][0]
        assert result["status"] == "applied", result
        return result["version"]
    finally:
        context.close()


def test_two_handhelds_of_one_warden_edit_one_field_offline_and_converge_on_the_desks_choice(
        live_server, world, browser):
    first = handheld(browser, live_server.url, "Handheld 1")
    first.new_observation(description="Three lads on the bench")
    first.sync()
    record_id = Observation.objects.get().pk
    second = handheld(browser, live_server.url, "Handheld 2")
    assert description(second, record_id) == "Three lads on the bench"
    assert description(first, record_id) == "Three lads on the bench"

    first.go_offline()
    second.go_offline()
    edit(first, record_id, "Three lads on the bench, cans left behind")
    edit(second, record_id, "Three lads on the bench, moved on peacefully")

    first.go_online()
    first.sync()
    assert "applied" in last_log_entry(first)
    second.go_online()
    second.sync()
    entry = last_log_entry(second)
    assert "conflict" in entry and "kept for your supervisor to decide" in entry, entry
    assert "1 record changed by two people at once, waiting for your supervisor" in second.text()
    assert needs_attention(second) and "In conflict" in second.page.locator("#problems-h + ul").inner_text()
    open_record(second, record_id)
    assert CONFLICT_BANNER in second.text()
    # The form shows the server's value; the device's stays with the conflict, not lost.
    assert second.page.get_by_label("Description", exact=True).input_value() == (
        "Three lads on the bench, cans left behind")
    second.screenshot("conflict-second-handheld")
    conflict = Conflict.objects.get(record_id=record_id)
    assert (conflict.reason, conflict.device.label, conflict.resolved_at) == ("fields", "Handheld 2", None)

    desk = Desk(browser, live_server.url).login()
    assert desk.open_conflict(record_id) == "Same fields changed on the server"
    assert desk.sides("description") == ("Three lads on the bench, moved on peacefully",
                                         "Three lads on the bench, cans left behind")
    desk.screenshot("two-handhelds")
    desk.resolve("description", keep="Device value")

    for app in (first, second):
        app.sync()
        assert description(app, record_id) == "Three lads on the bench, moved on peacefully"
        assert CONFLICT_BANNER not in app.text()
        assert not needs_attention(app)
        app.assert_clean()
    first.screenshot("converged-first-handheld")
    assert not desk.errors, desk.errors

    conflict.refresh_from_db()
    observation = Observation.objects.get()
    assert observation.description == "Three lads on the bench, moved on peacefully"
    assert conflict.resolved_by_id == world.users["supervisor"].pk
    assert conflict.resolution["choices"] == {"description": "device"}
    assert conflict.resolution["version"] == observation.version == 3


def test_offline_edit_against_a_supervisors_online_correction_is_resolved_on_the_desk(
        live_server, world, browser):
    app = handheld(browser, live_server.url, "Handheld 1")
    app.new_observation(description="Man shouting at passers-by", actions=())
    app.sync()
    record_id = Observation.objects.get().pk

    app.go_offline()
    edit(app, record_id, "Man shouting at passers-by near the Co-op", check="Advice given")
    corrected = "Man shouting at passers-by on Bradshawgate (corrected by supervisor)"
    assert api_correct(browser, live_server.url, record_id, {"description": corrected}) == 2

    app.go_online()
    app.sync()
    entry = last_log_entry(app)
    assert "conflict" in entry and "kept for your supervisor to decide" in entry, entry
    open_record(app, record_id)
    assert CONFLICT_BANNER in app.text()
    # Only the overlapping field waits for the supervisor; the other one went in.
    assert app.page.get_by_label("Description", exact=True).input_value() == corrected
    assert app.page.get_by_label("Advice given", exact=True).is_checked()
    app.screenshot("conflict-with-supervisor-correction")
    observation = Observation.objects.get()
    assert (observation.description, observation.action_taken, observation.version) == (corrected, ["advice"], 3)

    desk = Desk(browser, live_server.url).login()
    assert desk.open_conflict(record_id) == "Same fields changed on the server"
    assert desk.sides("description") == ("Man shouting at passers-by near the Co-op", corrected)
    desk.screenshot("supervisor-correction")
    desk.resolve("description", keep="Server value")

    app.sync()
    assert description(app, record_id) == corrected
    assert CONFLICT_BANNER not in app.text()
    assert not needs_attention(app)
    app.assert_clean()
    assert not desk.errors, desk.errors

    conflict = Conflict.objects.get(record_id=record_id)
    assert conflict.resolved_by_id == world.users["supervisor"].pk
    assert conflict.resolution["choices"] == {"description": "server"}
    observation.refresh_from_db()
    assert (observation.description, observation.action_taken) == (corrected, ["advice"])
    assert conflict.resolution["version"] == observation.version == 3  # keeping the server's side changes nothing


def test_returned_on_the_desk_fixed_offline_and_approved_at_the_new_version(live_server, world, browser):
    note = "Say what action you took"
    app = handheld(browser, live_server.url, "Handheld 1")
    app.wait_offline_ready()
    app.new_observation(description="Youths on the wall", actions=())
    app.sync()
    record_id = Observation.objects.get().pk

    desk = Desk(browser, live_server.url).login()
    desk.open_record_from_queue(record_id)
    desk.decide("Return with issues", note)
    # The queue held only this record: the desk goes back to it, saying what was decided.
    desk.page.locator(".messages", has_text="Has issues: saved as version").wait_for()
    assert "Nothing left to review" in desk.page.locator(".messages").inner_text()
    observation = Observation.objects.get()
    assert (observation.review_state, observation.version) == ("has_issues", 2)
    # The supervisor goes back to the record (at version 2) and keeps it open meanwhile.
    desk.page.goto(f"{live_server.url}/review/records/observation/{record_id}/")

    app.sync()
    app.home()
    assert note in app.page.locator("#returned-list").inner_text()
    app.go_offline()
    app.page.locator("#returned-list a").first.click()
    app.wait_screen("observation")
    assert note in app.page.locator("#review-note").inner_text()
    app.page.get_by_label("Description", exact=True).fill("Youths on the wall, moved on")
    app.page.get_by_label("Advice given", exact=True).check()
    app.page.get_by_role("button", name="Save changes").click()
    app.wait_screen("home")
    app.go_online()
    app.sync()
    entry = last_log_entry(app)
    assert "applied" in entry and "conflict" not in entry, entry
    observation.refresh_from_db()
    assert (observation.review_state, observation.version) == ("edited", 3)

    # The desk page still shows version 2: approving from it must not approve unseen changes.
    desk.decide("Approve")
    assert "changed since version 2" in desk.page.locator(".errors[role=alert]").inner_text()
    assert Observation.objects.get().review_state == "edited"

    # The refused page shows version 3 and decides on it: pressing Approve again works.
    assert desk.page.get_by_text("Youths on the wall, moved on").count() == 1
    assert desk.page.locator("form.decision input[name=version]").input_value() == "3"
    desk.decide("Approve")
    # The queue held only this record: the desk goes back to it, saying what was decided.
    desk.page.locator(".messages", has_text="Approved: saved as version").wait_for()
    assert "Nothing left to review" in desk.page.locator(".messages").inner_text()
    desk.screenshot("approved-new-version")
    assert not desk.errors, desk.errors

    observation.refresh_from_db()
    assert (observation.review_state, observation.description, observation.action_taken) == (
        "approved", "Youths on the wall, moved on", ["advice"])
    approval = Review.objects.get(observation_id=record_id, decision="approved")
    assert approval.reviewer_id == world.users["supervisor"].pk
    assert approval.record_version == observation.version == 4
    # The approval added no content of its own: what was approved is the warden's version 3.
    versions = {v.version: v for v in RecordVersion.objects.filter(record_id=record_id)}
    assert versions[4].changed_fields == ["review"]
    assert sorted(versions[3].changed_fields) == ["action_taken", "description"]
    assert versions[3].device.label == "Handheld 1"

    app.sync()
    open_record(app, record_id)
    assert "Approved by your supervisor" in app.text()
    # Locked: shown as text, with no control to change it.
    assert app.page.locator("#observation-facts").count() == 1 and app.page.locator("#save-observation").count() == 0
    app.home()
    assert app.page.locator("#returned-list").count() == 0
    app.screenshot("approved-after-return")
    app.assert_clean()


def test_an_edit_made_offline_while_the_supervisor_approved_says_so_on_the_handheld(live_server, world, browser):
    app = handheld(browser, live_server.url, "Handheld 1")
    app.wait_offline_ready()
    app.new_observation(description="Bins set alight behind the shops")
    app.sync()
    record_id = Observation.objects.get().pk
    app.go_offline()
    edit(app, record_id, "Bins set alight behind the shops, fire service called")

    desk = Desk(browser, live_server.url).login()
    desk.open_record_from_queue(record_id)
    desk.decide("Approve")
    # The queue held only this record: the desk goes back to it, saying what was decided.
    desk.page.locator(".messages", has_text="Approved: saved as version").wait_for()
    assert "Nothing left to review" in desk.page.locator(".messages").inner_text()

    app.go_online()
    app.sync()
    assert "conflict" in last_log_entry(app)
    open_record(app, record_id)
    banner = app.page.locator(".banner.warn").inner_text()
    assert "approved this record while you were changing it" in banner, banner
    assert CONFLICT_BANNER not in banner
    assert Conflict.objects.get(record_id=record_id).reason == "review_locked"
    assert Observation.objects.get().description == "Bins set alight behind the shops"
    app.screenshot("conflict-review-locked")
    app.assert_clean()
