"""The supervisor's walk through the review desk in Chromium, at 360 and 1366 px, on the demo
partnership (seed_demo's users and records): supervisor_leigh signs in at the front door, opens
the desk from home, sees the queue with its map, filters it, opens a record, approves it and
lands on the next one of the same filtered queue; then the conflicts, a conflict, the
quarantine, a refused change, the team's devices and the API tokens. Every page: no request
leaves 127.0.0.1, no console error, nothing wider than the window, labels and never the
codes. A warden opening the desk gets the clear refused page."""
import shutil
import uuid
from pathlib import Path

import pytest
from django.core.cache import cache

from tests.e2e.walk import walker

pytestmark = [pytest.mark.e2e]

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
# Codes the desk must never show as such where a person reads the page (ids and payloads
# aside): field names and code-list values the demo data and the pushes below hold.
RAW = ("incident_type", "persons_involved", "street_drinking", "to_review", "has_issues", "validation_failed",
       "not_in_choices", "approx_age")


@pytest.fixture
def demo(transactional_db, settings, tmp_path):
    """seed_demo with 60 records, committed for the live server, plus what the demo does not
    make: a conflict (two handhelds of warden_leigh change one description) and a change the
    server refused (an incident type not on the list), both in Leigh."""
    from fieldsync.sync.push import push_apply
    from fieldsync.sync.services.devices import device_enrol
    from warden_app.services.demo import DEMO_PASSWORD, demo_seed
    from warden_app.services.demo_records import demo_records_seed

    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SYNC_ENROL_RATE = "1000/min"
    cache.clear()
    partnership = demo_seed()
    demo_records_seed(partnership, count=60, password=DEMO_PASSWORD)
    warden = partnership.users["warden_leigh"]
    first, second = (device_enrol(username="warden_leigh", password=DEMO_PASSWORD, label=label,
                                  platform="Android 14, Chrome").device
                     for label in ("Handheld A", "Handheld B"))
    centre = partnership.areas["LEIGH-TC"].geom.centroid
    record_id = str(uuid.uuid4())
    data = {"qualifier": "nuisance", "incident_type": "noise", "observed_at": "2026-12-01T10:00:00+00:00",
            "description": "Music from a parked car", "action_taken": ["advice"], "persons_involved": [],
            "location": {"type": "Point", "coordinates": [centre.x, centre.y]}, "accuracy_m": 5.0,
            "fix_source": "gps"}

    def push(device, op, record, body, base=None):
        return push_apply(user=warden, device=device, mutations=[{
            "mutation_id": str(uuid.uuid4()), "type": "observation", "op": op, "id": record,
            "base_version": base, "client_time": "2026-12-01T10:05:00+00:00", "data": body}])[0]

    assert push(first, "create", record_id, data)["status"] == "applied"
    assert push(first, "update", record_id, {"incident_type": "rowdy_inconsiderate"}, 1)["status"] == "applied"
    assert push(second, "update", record_id, {"incident_type": "street_drinking"}, 1)["status"] == "conflict"
    refused = push(second, "create", str(uuid.uuid4()), {**data, "incident_type": "joyriding"})
    assert refused["status"] == "rejected", refused
    return partnership


def no_codes(page):
    text = page.locator("main").inner_text()
    shown = [code for code in RAW if code in text]
    assert not shown, f"{page.url} shows raw codes: {shown}"


# The elements sticking out of the window (Leaflet's own panes aside), to say what to fix.
WIDE = """() => [...document.querySelectorAll("main *")]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest(".leaflet-container"))
  .slice(0, 6).map(e => e.tagName.toLowerCase() + "." + e.className)"""


def check(walk, stop: str) -> str:
    shot = walk.shot(stop)
    try:
        walk.no_overflow()
    except AssertionError as error:
        raise AssertionError(f"{error}: {walk.page.evaluate(WIDE)}") from None
    no_codes(walk.page)
    return shot


@pytest.mark.parametrize("width", ["phone", "laptop"])
def test_a_supervisor_works_the_queue_and_the_desk(live_server, demo, browser, width):
    from warden_app.services.demo import DEMO_PASSWORD

    with walker(browser, live_server.url, "supervisor", width) as walk:
        page = walk.page
        walk.sign_in("supervisor_leigh", DEMO_PASSWORD)
        page.get_by_role("link", name="Review desk").first.click()
        page.wait_for_url(live_server.url + "/review/")
        assert page.locator("h1").inner_text() == "Submissions in your areas"
        # The queue's map: its points, the area outlined, and the note saying there is no base map.
        page.wait_for_selector("#queue-map[data-ready=true] path.queue-point")
        assert page.locator("#queue-map").is_visible()
        points = int(page.locator("#queue-map").get_attribute("data-points"))
        total = int(page.locator(".pager span").inner_text().split("(")[1].split()[0]) \
            if page.locator(".pager").count() else page.locator("table.queue tbody tr").count()
        assert points == total > 0
        assert "No base map" in page.locator("#queue-map").inner_text()
        shot = check(walk, "queue")
        if width == "laptop":
            DOCS_IMG.mkdir(exist_ok=True)
            shutil.copyfile(shot, DOCS_IMG / "review-desk.png")

        # Filtered to observations: the list, its links and the map follow.
        page.select_option("select[name=type]", "observation")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(lambda url: "type=observation" in url)
        page.wait_for_selector("#queue-map[data-ready=true]")
        types = set(page.locator("table.queue tbody td:nth-child(2)").all_inner_texts())
        assert types == {"Observation"}
        assert int(page.locator("#queue-map").get_attribute("data-points")) < points
        check(walk, "queue-filtered")

        first = page.locator("table.queue tbody tr a").first
        href = first.get_attribute("href")
        assert "type=observation" in href
        first.click()
        page.wait_for_url(live_server.url + href)
        page.wait_for_selector("#record-map[data-ready=true]")
        assert page.locator("h1").inner_text().startswith("Observation: ")
        check(walk, "record")

        page.get_by_label("Approve").check()
        page.get_by_role("button", name="Save decision").click()
        page.wait_for_url(lambda url: url != live_server.url + href and "/records/observation/" in url)
        assert "type=observation" in page.url  # the same filtered queue goes on
        message = page.locator(".messages").inner_text()
        assert message.startswith("Approved: saved as version") and "Next in the queue: observation" in message
        assert page.locator("#review-state").inner_text() in ("Submitted", "Edited after review")
        check(walk, "record-next")

        page.locator(".desk-header").get_by_role("link", name="Conflicts").click()
        page.wait_for_url(live_server.url + "/review/conflicts/")
        row = page.locator("table.conflicts tbody tr").first
        assert "Incident type" in row.inner_text() and "Observation" in row.inner_text()
        check(walk, "conflicts")
        row.get_by_role("link", name="Resolve").click()
        page.wait_for_url(lambda url: "/review/conflicts/" in url and url.count("/") > 5)
        sides = page.locator("table.sides").inner_text()
        assert "Street drinking" in sides and "Rowdy or inconsiderate behaviour" in sides
        check(walk, "conflict")

        page.locator(".desk-header").get_by_role("link", name="Quarantine").click()
        page.wait_for_url(live_server.url + "/review/quarantine/")
        row = page.locator("table.quarantine tbody tr").first
        assert "Not valid" in row.inner_text() and "Incident type: Not on the list" in row.inner_text()
        check(walk, "quarantine")
        row.get_by_role("link", name="Resolve").click()
        page.wait_for_url(lambda url: url.rstrip("/").split("/")[-1].isdigit())
        assert page.locator("h1").inner_text() == "Refused change: Not valid"
        walk.no_overflow()  # the payload as it arrived is the one place codes are shown
        walk.shot("quarantine-item")

        page.locator(".desk-header").get_by_role("link", name="Team devices").click()
        page.wait_for_url(live_server.url + "/review/devices/")
        assert page.locator("table.devices tbody tr", has_text="Handheld B").count() == 1
        check(walk, "devices")

        page.locator(".desk-header").get_by_role("link", name="API tokens").click()
        page.wait_for_url(live_server.url + "/review/tokens/")
        check(walk, "tokens")

        # A street audit: its items' issues and grades by their labels.
        walk.go("/review/?type=street_audit")
        page.locator("table.queue tbody tr a").first.click()
        page.wait_for_selector("#record-map[data-ready=true]")
        assert page.locator("h1").inner_text().startswith("Street audit: ")
        grades = set(page.locator("table.items tbody td:nth-child(3)").all_inner_texts()) - {"—"}
        assert all(": " in grade for grade in grades), grades  # "B: predominantly free…", never "B"
        check(walk, "audit")
        walk.assert_clean()


@pytest.mark.parametrize("width", ["phone", "laptop"])
def test_a_warden_opening_the_desk_gets_the_refused_page(live_server, demo, browser, width):
    from warden_app.services.demo import DEMO_PASSWORD

    with walker(browser, live_server.url, "warden-at-desk", width) as walk:
        walk.sign_in("warden_leigh", DEMO_PASSWORD)
        walk.go("/review/", status=403)
        assert walk.page.locator("h1").inner_text() == "Review desk is not open to you"
        walk.no_overflow()
        walk.shot("refused")
        walk.assert_clean()
