"""A supervisor works the review desk in a real Chromium, cut off from everything but the
live server: signs in, opens the queue and a record (its Leaflet map drawn from local
assets), returns it with issues, resolves a conflict two handhelds made by taking the
device's value, and revokes a lost handheld. The database is checked after each step."""
import uuid

import pytest
from django.core.cache import cache

from fieldsync.sync.models import Conflict, Device
from tests.e2e.handheld_support import ARTIFACTS, DESKTOP, local_only, sign_in
from tests.sync.conftest import PASSWORD, build_world, mutation, observation_data
from warden_app.models import AccessLogEntry, Observation, Review

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def desk_world(transactional_db, settings):
    """Committed before the browser starts: a submitted observation, a conflict made by two
    handhelds of one warden through the sync protocol, and a third handheld to revoke."""
    cache.clear()
    settings.SYNC_ENROL_RATE = "1000/min"
    world = build_world()
    first = world.enrol("warden", label="Handheld 1")
    submitted = uuid.uuid4()
    assert first.push_one(mutation("observation", "create", submitted,
                                   observation_data(description="Group by the bus station")))["status"] == "applied"
    disputed = uuid.uuid4()
    assert first.push_one(mutation("observation", "create", disputed,
                                   observation_data(incident_type="noise")))["status"] == "applied"
    second = world.enrol("warden", label="Handheld 2")
    assert first.push_one(mutation("observation", "update", disputed, {"description": "from first"},
                                   base_version=1))["status"] == "applied"
    result = second.push_one(mutation("observation", "update", disputed, {"description": "from second"},
                                      base_version=1))
    assert result["status"] == "conflict", result
    lost = world.enrol("warden2", label="Lost handheld")
    return {"world": world, "submitted": submitted, "disputed": disputed, "first": first, "lost": lost,
            "conflict": Conflict.objects.get(pk=result["conflict_id"])}


def test_supervisor_returns_a_record_resolves_a_conflict_and_revokes_a_device(live_server, desk_world, browser):
    world = desk_world["world"]
    supervisor = world.users["supervisor"]
    submitted, disputed, conflict = desk_world["submitted"], desk_world["disputed"], desk_world["conflict"]
    lost = desk_world["lost"]
    page_errors: list[str] = []
    failed: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)

    context = browser.new_context(viewport=DESKTOP)
    aborted = local_only(context, live_server.url)
    page = context.new_page()
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.on("requestfailed", lambda r: failed.append(f"{r.url} {r.failure}"))

    # Sign in: the desk sends the anonymous to its own login page.
    page.goto(f"{live_server.url}/review/")
    page.wait_for_url("**/review/login/?next=/review/")
    sign_in(page, "supervisor", PASSWORD, lands_on=f"{live_server.url}/review/")

    # The queue lists both submitted records; the list shows no personal data.
    queue_rows = page.locator("table.queue tbody tr[data-record-id]")
    assert queue_rows.count() == 2
    assert page.locator(f"tr[data-record-id='{submitted}']").count() == 1
    assert "Group by the bus station" not in page.content()
    page.screenshot(path=str(ARTIFACTS / "review-desk-queue.png"), full_page=True)
    # (The conflict made above was logged by its push answer, with its device: not the desk.)
    assert not AccessLogEntry.objects.filter(action="consultation", device_id__isnull=True).exists()

    # Open the record: its map draws from local Leaflet, its personal fields show,
    # and the look is logged as a consultation.
    page.click(f"tr[data-record-id='{submitted}'] a")
    page.wait_for_url(f"**/review/records/observation/{submitted}/")
    page.locator("#record-map[data-ready=true]").wait_for(timeout=15_000)
    page.locator("#record-map path.record-marker").wait_for(timeout=10_000)
    assert page.locator("#record-map .leaflet-tile").count() == 0  # no TILE_URL: no tiles
    assert page.get_by_text("Group by the bus station").count() == 1
    page.screenshot(path=str(ARTIFACTS / "review-desk-record.png"), full_page=True)
    logged = AccessLogEntry.objects.filter(action="consultation", actor=supervisor)
    assert [(e.record_type, e.record_ids) for e in logged] == [("observation", [submitted])]

    # Return it with issues: the note is required, and it is saved with the review.
    page.check("input[name=decision][value=has_issues]")
    page.fill("textarea[name=note]", "Add the action you took and when you left")
    page.click("form.decision button[type=submit]")
    # On to the next record of the queue, the disputed one, saying what was decided.
    page.locator(".messages", has_text="Has issues: saved as version 2. Next in the queue").wait_for(
        timeout=10_000)
    assert page.url.endswith(f"/review/records/observation/{desk_world['disputed']}/")
    record = Observation.objects.get(pk=submitted)
    assert (record.review_state, record.version) == ("has_issues", 2)
    review = Review.objects.get(observation_id=submitted)
    assert (review.decision, review.note, review.reviewer_id) == (
        "has_issues", "Add the action you took and when you left", supervisor.pk)
    page.screenshot(path=str(ARTIFACTS / "review-desk-returned.png"), full_page=True)
    # ...and it reaches the author's handheld on its next pull.
    first = desk_world["first"]
    first.pull_all()
    assert first.store[("observation", str(submitted))]["review"]["note"] == (
        "Add the action you took and when you left")

    # Resolve the conflict by taking the device's value.
    page.click("header nav a:has-text('Conflicts')")
    page.wait_for_url("**/review/conflicts/")
    page.click(f"tr[data-conflict-id='{conflict.pk}'] a:has-text('Resolve')")
    page.wait_for_url(f"**/review/conflicts/{conflict.pk}/")
    row = page.locator("tr[data-field=description]")
    assert "from second" in row.locator("td").nth(0).inner_text()
    assert "from first" in row.locator("td").nth(1).inner_text()
    row.locator("input[value=device]").check()
    page.screenshot(path=str(ARTIFACTS / "review-desk-conflict.png"), full_page=True)
    page.click("form.resolve button[type=submit]")
    page.locator("#conflict-resolved").wait_for(timeout=10_000)
    conflict.refresh_from_db()
    assert conflict.resolved_by_id == supervisor.pk
    assert conflict.resolution["choices"] == {"description": "device"}
    assert Observation.objects.get(pk=disputed).description == "from second"

    # Revoke the lost handheld (the page asks first).
    page.click("header nav a:has-text('Team devices')")
    page.wait_for_url("**/review/devices/")
    device_row = page.locator(f"tr[data-device-id='{lost.device_id}']")
    assert "warden2" in device_row.inner_text()
    page.once("dialog", lambda dialog: dialog.accept())
    device_row.locator("button:has-text('Revoke')").click()
    page.locator(".messages", has_text="is revoked").wait_for(timeout=10_000)
    device = Device.objects.get(pk=lost.device_id)
    assert device.revoked_at is not None and device.revoked_by_id == supervisor.pk
    assert page.locator(f"tr[data-device-id='{lost.device_id}'] button").count() == 0
    page.screenshot(path=str(ARTIFACTS / "review-desk-devices.png"), full_page=True)
    response = lost.get("/api/v1/sync/manifest")
    assert response.status_code == 401 and response.json()["code"] == "device_revoked"

    assert not aborted, f"requests to other hosts: {aborted}"
    assert not page_errors, page_errors
    assert not failed, failed
