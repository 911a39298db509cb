"""A lost handheld gives nothing away: the local store is ciphertext, the app locks, a revoked
device wipes itself, and an app that has not synced for too long keeps records closed."""
import json

import pytest

from fieldsync.sync.models import Device
from fieldsync.sync.services.devices import device_revoke
from tests.e2e.handheld_support import PIN, Handheld, chromium_context
from tests.sync.conftest import PASSWORD
from warden_app.models import Observation

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SECRET_DESCRIPTION = "Zebra-striped scooter rider shouting at shoppers"
SECRET_NAME = "Jane Quinlan-Example"
SECRET_CLOTHES = "tall woman, green anorak"


def stored_text(dump: list[dict]) -> str:
    """Every key and value the origin's IndexedDB holds, as one string (database and store
    names left out: they are ours, not data)."""
    return json.dumps([[store["keys"], store["values"]] for store in dump], ensure_ascii=False)


def test_revoked_handheld_wipes_all_local_data_at_next_sync(live_server, world):
    with chromium_context() as context:
        app = Handheld(context, live_server.url).open()
        app.login("warden", PASSWORD)
        app.wait_offline_ready()
        app.new_observation(description="Seen before the phone went missing")
        app.sync()
        assert app.idb_names() == ["fieldsync-warden"]
        assert app.cache_names(), "the service worker has cached the app"

        device = Device.objects.get(user=world.users["warden"])
        device_revoke(device=device, by=world.users["supervisor"])

        app.go("#sync")
        app.page.locator("#sync-now").click()
        app.wait_screen("login")
        assert "revoked" in app.text()
        assert app.page.get_by_label("Username").is_visible()
        assert app.idb_names() == []
        assert app.cache_names() == []
        assert app.page.evaluate("localStorage.length + sessionStorage.length") == 0

        # Reopened, it is a fresh handheld: nothing left to unlock.
        app.reload()
        app.wait_screen("login")
        assert app.idb_names() == []
        app.assert_clean()
    # The server kept what had been synced before the loss.
    assert Observation.objects.filter(description="Seen before the phone went missing").exists()


def test_locked_app_shows_no_record_and_indexeddb_holds_only_ciphertext(live_server, world):
    with chromium_context() as context:
        app = Handheld(context, live_server.url).open()
        app.login("warden", PASSWORD)
        app.new_observation(
            description=SECRET_DESCRIPTION, incident="Begging or vagrancy", qualifier="Personal",
            person={"description": SECRET_CLOTHES, "name": SECRET_NAME, "approx_age": 41})
        app.sync()  # the server's copy comes back too, with the record's server fields
        record_id = str(Observation.objects.get(description=SECRET_DESCRIPTION).pk)
        # And one change still waiting in the outbox.
        app.go_offline()
        app.new_observation(description=SECRET_DESCRIPTION + " (second sighting)", incident="Begging or vagrancy")
        app.go(f"#obs/{record_id}")
        app.wait_screen("observation")
        assert app.page.get_by_label("Description", exact=True).input_value() == SECRET_DESCRIPTION

        app.lock()
        app.screenshot("locked")
        html = app.page.content()
        for secret in (SECRET_DESCRIPTION, SECRET_NAME, SECRET_CLOTHES, record_id):
            assert secret not in html
        assert "Begging or vagrancy" not in app.text()  # (the code list itself is in the page's config)
        # Asking for the record by its address while locked still shows only the lock.
        app.go(f"#obs/{record_id}")
        assert app.screen() == "locked"
        assert SECRET_DESCRIPTION not in app.page.content()

        dump = app.idb_dump()
        stores = {entry["store"]: entry for entry in dump}
        assert set(stores) == {"meta", "records", "outbox", "photos", "state"}
        assert len(stores["records"]["values"]) >= 2 and len(stores["outbox"]["values"]) == 1
        # Plain bookkeeping only: the KDF salt and parameters, the PIN check, two counters.
        assert sorted(stores["meta"]["keys"]) == ["check", "failures", "kdf", "pending"]
        kdf = stores["meta"]["values"][stores["meta"]["keys"].index("kdf")]
        assert kdf["name"] == "PBKDF2" and kdf["iterations"] >= 200_000 and kdf["salt"]["size"] == 16
        for name in ("records", "outbox", "photos", "state"):
            for key, value in zip(stores[name]["keys"], stores[name]["values"], strict=True):
                assert len(key) == 64 and set(key) <= set("0123456789abcdef"), key  # HMAC, not an id
                assert set(value) == {"iv", "ct"}, value
        haystack = stored_text(dump)
        for secret in (SECRET_DESCRIPTION, "Zebra", SECRET_NAME, SECRET_CLOTHES, "begging_vagrancy",
                       "Begging", record_id, record_id.replace("-", ""), "fsd_", "warden", "Leigh",
                       "observation", "53.4975", "-2.517"):
            assert secret not in haystack, f"{secret!r} is readable in IndexedDB"

        # The wrong PIN opens nothing; the right one opens everything, offline.
        app.page.get_by_label("PIN", exact=True).fill("000000")
        app.page.get_by_role("button", name="Unlock").click()
        app.page.get_by_text("Wrong PIN").wait_for()
        assert app.screen() == "locked"
        assert SECRET_DESCRIPTION not in app.page.content()
        app.unlock(PIN)
        app.wait_screen("observation")
        assert app.page.get_by_label("Description", exact=True).input_value() == SECRET_DESCRIPTION
        app.assert_clean()


def test_app_locks_itself_when_idle_and_keeps_what_was_being_typed(live_server, world, settings):
    settings.HANDHELD_IDLE_LOCK_MINUTES = 0.15  # 9 seconds
    with chromium_context() as context:
        app = Handheld(context, live_server.url).open()
        app.login("warden", PASSWORD)
        app.new_observation(description="Left on the dashboard")
        app.wait_screen("home")
        assert "Street drinking" in app.text()

        # Half-way through a form, the warden walks away.
        app.go("#obs/new")
        app.wait_screen("observation")
        app.page.get_by_label("Personal", exact=True).check()
        app.page.get_by_label("Incident type").select_option(label="Noise")
        app.page.get_by_label("Description", exact=True).fill("Music from the flat above the chip shop")
        app.wait_screen("locked", timeout=30_000)
        assert "inactivity" in app.text()
        assert "Street drinking" not in app.text() and "chip shop" not in app.page.content()
        assert "chip shop" not in stored_text(app.idb_dump())  # the draft is encrypted too

        app.unlock(PIN)
        app.wait_screen("observation")
        description = app.page.get_by_label("Description", exact=True)
        assert description.input_value() == "Music from the flat above the chip shop"
        assert app.page.get_by_label("Personal", exact=True).is_checked()
        app.wait_fix()
        app.page.get_by_role("button", name="Save observation").click()
        app.wait_screen("home")
        assert "Noise" in app.text() and "Street drinking" in app.text()
        app.assert_clean()


def test_records_stay_closed_after_too_long_without_sync_until_signed_in_online(live_server, world, settings):
    settings.HANDHELD_MAX_DAYS_WITHOUT_SYNC = 12 / 86400  # 12 seconds
    with chromium_context() as context:
        app = Handheld(context, live_server.url).open()
        app.login("warden", PASSWORD)
        app.wait_offline_ready()
        app.go_offline()
        app.new_observation(description="Recorded just before the signal went")
        app.page.wait_for_timeout(13_000)
        app.go("#records")
        app.wait_screen("signin-again")
        assert "Street drinking" not in app.text()
        # Locking and unlocking does not get round it.
        app.lock()
        app.unlock(PIN)
        app.wait_screen("signin-again")
        assert "Street drinking" not in app.text()

        # Offline, signing in fails and records stay closed.
        app.page.get_by_label("Password").fill(PASSWORD)
        app.page.get_by_role("button", name="Sign in online").click()
        app.page.get_by_text("No connection").wait_for()
        assert app.screen() == "signin-again"

        app.go_online()
        app.mark_sync()
        app.page.get_by_label("Password").fill(PASSWORD)
        app.page.get_by_role("button", name="Sign in online").click()
        app.wait_screen("home")
        app.wait_sync()
        assert "Street drinking" in app.text()
        app.assert_clean()
    assert Device.objects.filter(user=world.users["warden"]).count() == 2
    assert Observation.objects.filter(description="Recorded just before the signal went").exists()
