"""The warden's walk through the handheld in Chromium, at 360 and 1366 px: sign in, home, a new
observation saved with a mistake then fixed (the error goes as soon as it is fixed), saved
offline and then sent (the message follows the outbox), the sync log in words, a record whose
photo was sent from another phone (its thumbnail from the server), and a colleague's record
returned with issues, read only; a police record's personal fields "withheld". Nothing leaves
127.0.0.1, no console error, nothing wider than the window."""
import hashlib
import uuid

import pytest

from tests.e2e.handheld_support import GEO, Handheld, jpeg_bytes
from tests.e2e.walk import walker
from tests.sync.conftest import PASSWORD, mutation, observation_data
from warden_app.services.review import review_decide

pytestmark = [pytest.mark.e2e]


def seeded(world):
    """A record of the warden's with a photo sent from their old phone, a colleague's record
    returned with issues, and a PCSO's (another organisation: personal fields not shared)."""
    old_phone, colleague, pcso = world.enrol("warden", "old phone"), world.enrol("warden2"), world.enrol("pcso")
    photo = jpeg_bytes((30, 110, 60))
    sha = hashlib.sha256(photo).hexdigest()
    ids = {"photo": uuid.uuid4(), "colleague": uuid.uuid4(), "pcso": uuid.uuid4()}
    assert old_phone.push_one(mutation("observation", "create", ids["photo"], observation_data(
        description="Bins set alight behind the library", incident_type="littering_drugs_paraphernalia",
        photos=[sha])))["status"] == "applied"
    put = old_phone.client.put(f"/api/v1/attachments/{sha}", data=photo, content_type="image/jpeg", **old_phone.auth)
    assert put.status_code == 201, put.content
    noise = observation_data(description="Noise from the flats on Bond Street",
                             incident_type="rowdy_nuisance_neighbours")
    assert colleague.push_one(mutation("observation", "create", ids["colleague"], noise))["status"] == "applied"
    review_decide(reviewer=world.users["supervisor"], record_type="observation", record_id=ids["colleague"],
                  decision="has_issues", note="Which flat number?")
    assert pcso.push_one(mutation("observation", "create", ids["pcso"], observation_data(
        description="Known youth named by a shopkeeper", incident_type="rowdy_inconsiderate")))["status"] == "applied"
    return ids


def shot(walk, stop: str):
    """The stop's screenshot without the passing message over it (it goes by itself in 5 s)."""
    walk.page.evaluate("document.getElementById('toast').style.visibility = 'hidden'")
    walk.no_overflow()
    walk.shot(stop)
    walk.page.evaluate("document.getElementById('toast').style.visibility = ''")


def toast(app: Handheld, starts: str) -> str:
    return app.poll("(s) => { const t = document.getElementById('toast').textContent;"
                    " return t.startsWith(s) ? t : ''; }", arg=starts)


@pytest.mark.parametrize("width", ["phone", "laptop"])
def test_a_warden_records_offline_sends_and_reads_the_log_in_plain_words(live_server, world, browser, width):
    ids = seeded(world)
    with walker(browser, live_server.url, "warden", width, geolocation=GEO, permissions=["geolocation"],
                service_workers="allow") as walk:
        walk.sign_in("warden", PASSWORD)
        walk.page.get_by_role("link", name="Handheld app").first.click()
        walk.page.wait_for_url(live_server.url + "/warden/")
        app = Handheld(walk.context, live_server.url, page=walk.page)
        app.wait_screen("login")
        shot(walk, "sign-in")
        app.login("warden", PASSWORD)

        # A new observation, offline: saved without a qualifier first.
        walk.context.set_offline(True)
        app.poll("() => !navigator.onLine")
        app.page.get_by_role("link", name="New observation").click()
        app.wait_screen("observation")
        app.page.get_by_label("Incident type").select_option(label="Street drinking")
        app.page.get_by_label("Description", exact=True).fill("Two men drinking on the war memorial steps")
        app.wait_fix()
        app.page.get_by_role("button", name="Save observation").click()
        error = app.page.locator("fieldset.choices[aria-invalid=true] .error")
        assert error.inner_text() == "Choose a qualifier."
        shot(walk, "validation")
        app.page.get_by_label("Nuisance", exact=True).check()
        assert app.page.locator("fieldset.choices[aria-invalid=true]").count() == 0  # gone when fixed
        app.page.get_by_role("button", name="Save observation").click()
        app.wait_screen("home")
        assert toast(app, "Saved on this phone") == "Saved on this phone — will send when online."
        assert "1 change and 0 photos waiting to send" in app.text()

        # Back online: the app sends by itself and says where the record is now.
        app.mark_sync()
        walk.context.set_offline(False)
        app.wait_sync()
        assert toast(app, "Sent") == "Sent, waiting for review."
        assert "Nothing waiting to send" in app.text()
        shot(walk, "home")  # the phone's is docs/img/handheld.png

        # The sync log: words, not codes.
        app.go("#sync")
        app.wait_screen("sync")
        assert app.log_statuses()[0] == "applied"
        log = app.page.locator("#sync-log").inner_text()
        assert "Sent and accepted. Nothing to do." in log
        for code in ("applied", "v1", "create", "{"):
            assert code not in log, (code, log)
        message = app.page.locator("[data-sync-message]").inner_text()
        assert ": 1 record sent." in message, message  # its echo from the server is not "received"
        shot(walk, "sync-log")

        # A record whose photo went from the old phone: its thumbnail comes from the server.
        app.go(f"#obs/{ids['photo']}")
        app.wait_screen("observation")
        app.poll("() => { const i = document.querySelector('.photos img');"
                 " return i && i.complete && i.naturalWidth > 0; }")
        shot(walk, "sent-photo")

        # A colleague's record returned with issues: read only, nothing to correct here.
        app.go(f"#obs/{ids['colleague']}")
        app.wait_screen("observation")
        text = app.text()
        assert "read only" in text and "Which flat number?" in text
        assert "Correct the record" not in text and app.page.locator("#save-observation").count() == 0
        assert app.page.locator("#observation-facts input, #observation-facts textarea").count() == 0
        assert app.page.locator("#fact-description").inner_text() == "Noise from the flats on Bond Street"
        shot(walk, "read-only")

        # A PCSO's record: the fields the council may not see say so.
        app.go(f"#obs/{ids['pcso']}")
        app.wait_screen("observation")
        withheld = "Withheld: not shared with your organisation."
        for fact in ("#fact-description", "#fact-persons", "#fact-photos"):
            assert withheld in app.page.locator(fact).inner_text(), fact
        assert "Known youth" not in app.text()
        shot(walk, "withheld")
        walk.assert_clean()
        app.assert_clean()
