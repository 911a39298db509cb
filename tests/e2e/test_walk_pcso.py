"""The PCSO's walk through the handheld in Chromium, at 360 and 1366 px. A PCSO is police staff
in a council's partnership: they record in their area like a warden, and read the council's
records of that area with the personal fields the sharing rules keep from the police shown as
"withheld" (never blank, never the value). Nothing leaves 127.0.0.1, no console error, nothing
wider than the window."""
import uuid

import pytest

from tests.e2e.handheld_support import GEO, Handheld
from tests.e2e.test_walk_warden import shot, toast
from tests.e2e.walk import walker
from tests.sync.conftest import PASSWORD, mutation, observation_data

pytestmark = [pytest.mark.e2e]


@pytest.mark.parametrize("width", ["phone", "laptop"])
def test_a_pcso_records_and_reads_council_records_with_personal_fields_withheld(live_server, world, browser, width):
    council = uuid.uuid4()
    warden = world.enrol("warden")
    assert warden.push_one(mutation("observation", "create", council, observation_data(
        description="Lad in a red coat kicking bins on Market Street",
        incident_type="rowdy_inconsiderate")))["status"] == "applied"

    with walker(browser, live_server.url, "pcso", width, geolocation=GEO, permissions=["geolocation"],
                service_workers="allow") as walk:
        walk.sign_in("pcso", PASSWORD)
        walk.no_overflow()
        walk.shot("front-door-home")
        walk.page.get_by_role("link", name="Handheld app").first.click()
        walk.page.wait_for_url(live_server.url + "/warden/")
        app = Handheld(walk.context, live_server.url, page=walk.page)
        app.wait_screen("login")
        app.login("pcso", PASSWORD)
        shot(walk, "home")

        # The council warden's record, as the police may read it.
        app.go(f"#obs/{council}")
        app.wait_screen("observation")
        withheld = "Withheld: not shared with your organisation."
        for fact in ("#fact-description", "#fact-persons"):
            assert withheld in app.page.locator(fact).inner_text(), fact
        assert "red coat" not in app.text()
        shot(walk, "council-record")

        # Their own observation goes in like a warden's.
        app.go("#home")
        app.wait_screen("home")
        app.page.get_by_role("link", name="New observation").click()
        app.wait_screen("observation")
        app.page.get_by_label("Incident type").select_option(label="Street drinking")
        app.page.get_by_label("Nuisance", exact=True).check()
        app.page.get_by_label("Description", exact=True).fill("Group drinking by the bus station shelter")
        app.wait_fix()
        app.mark_sync()
        app.page.get_by_role("button", name="Save observation").click()
        app.wait_screen("home")
        app.wait_sync()
        assert toast(app, "Sent") == "Sent, waiting for review."
        assert "Nothing waiting to send" in app.text()
        shot(walk, "sent")
        walk.assert_clean()
        app.assert_clean()
