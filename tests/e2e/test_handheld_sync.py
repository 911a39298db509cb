"""Sync as the handheld lives it: records deleted elsewhere or no longer in scope go away,
records returned with issues come back to the author and are fixed, several offline edits
share one base version, and a 410 makes the app start its pull again without losing work."""
import hashlib
import uuid

import pytest

from fieldsync.sync.models import Attachment
from tests.e2e.handheld_support import GEO, Handheld, chromium_context, jpeg_bytes
from tests.sync.conftest import PASSWORD, mutation, observation_data
from warden_app.models import Observation
from warden_app.services.review import review_decide
from warden_app.services.teams import team_set_areas

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def record_shown(app: Handheld, type_hash: str, record_id) -> bool:
    app.go(f"#{type_hash}/{record_id}")
    app.poll("() => ['observation', 'missing', 'audit'].includes(document.body.dataset.screen)")
    return app.screen() != "missing"


def test_deleted_elsewhere_and_evicted_records_disappear_after_sync(live_server, world):
    other_phone = world.enrol("warden", label="second handheld")
    colleague = world.enrol("warden2")
    own_id, colleague_id = uuid.uuid4(), uuid.uuid4()
    assert other_phone.push_one(mutation("observation", "create", own_id, observation_data(
        description="Made on the other handheld")))["status"] == "applied"
    assert colleague.push_one(mutation("observation", "create", colleague_id, observation_data(
        description="Made by a colleague in Leigh", incident_type="noise")))["status"] == "applied"

    with chromium_context() as context:
        app = Handheld(context, live_server.url).open()
        app.login("warden", PASSWORD)
        assert record_shown(app, "obs", own_id)
        assert app.page.get_by_label("Description", exact=True).input_value() == "Made on the other handheld"
        assert record_shown(app, "obs", colleague_id)
        assert "read only" in app.text()

        # Deleted on the other handheld: gone from this one at the next sync.
        assert other_phone.push_one(mutation("observation", "delete", own_id, base_version=1))["status"] == "applied"
        app.sync()
        assert not record_shown(app, "obs", own_id)
        app.go("#sync")
        app.wait_screen("sync")
        log = app.page.locator("#sync-log").inner_text()
        assert "deleted" in app.log_statuses() and "Deleted on the server" in log

        # The team loses Leigh: the colleague's record may no longer be held (evict), the
        # warden's own open records stay (they follow their author).
        app.new_observation(description="Mine, still open")
        app.sync()
        team_set_areas(team=world.teams["leigh"], areas=[world.areas["leigh_west"]])
        app.sync()
        assert not record_shown(app, "obs", colleague_id)
        app.go("#sync")
        app.wait_screen("sync")
        assert "evicted" in app.log_statuses()
        assert "No longer yours to hold" in app.page.locator("#sync-log").inner_text()
        app.home()
        assert "Street drinking" in app.page.locator("#my-records").inner_text()
        app.assert_clean()


def test_record_returned_with_issues_is_fixed_offline_with_two_edits_on_one_base(live_server, world):
    with chromium_context() as context:
        app = Handheld(context, live_server.url).open()
        app.login("warden", PASSWORD)
        app.wait_offline_ready()
        app.new_observation(description="Youths on the wall", actions=())
        app.sync()
        observation = Observation.objects.get()
        review_decide(reviewer=world.users["supervisor"], record_type="observation", record_id=observation.pk,
                      decision="has_issues", note="Say what action you took")
        app.sync()
        app.home()
        returned = app.page.locator("#returned-list").inner_text()
        assert "Say what action you took" in returned

        app.go_offline()
        app.page.locator("#returned-list a").first.click()
        app.wait_screen("observation")
        assert "Say what action you took" in app.page.locator("#review-note").inner_text()
        app.screenshot("returned-with-issues")
        app.page.get_by_label("Description", exact=True).fill("Youths on the wall, moved on")
        app.page.get_by_role("button", name="Save changes").click()
        app.wait_screen("home")
        app.go(f"#obs/{observation.pk}")
        app.wait_screen("observation")
        app.page.get_by_label("Advice given", exact=True).check()
        app.page.get_by_role("button", name="Save changes").click()
        app.wait_screen("home")
        app.go("#sync")
        app.wait_screen("sync")
        waiting = app.page.locator('#outbox-list li[data-op="update"][data-base-version="2"]')
        assert waiting.count() == 2, app.page.locator("#outbox-list").inner_text()  # both carry the version last seen

        app.go_online()
        app.sync()
        statuses = app.log_statuses()
        assert "conflict" not in statuses and "rejected" not in statuses, statuses
        app.home()
        assert app.page.locator("#returned-list").count() == 0
        app.assert_clean()

    observation.refresh_from_db()
    assert observation.review_state == "edited"
    assert observation.description == "Youths on the wall, moved on"
    assert observation.action_taken == ["advice"]


def test_resync_required_drops_cursor_and_copies_but_keeps_the_outbox(live_server, world, settings):
    colleague = world.enrol("warden2")
    colleague_id = uuid.uuid4()
    colleague.push_one(mutation("observation", "create", colleague_id, observation_data(description="Theirs")))
    with chromium_context() as context:
        app = Handheld(context, live_server.url).open()
        app.login("warden", PASSWORD)
        assert record_shown(app, "obs", colleague_id)
        app.go_offline()
        app.new_observation(description="Waiting while the server forgets cursors")
        # Every cursor the server handed out is now one it can no longer serve.
        settings.SECRET_KEY = settings.SECRET_KEY + "-rotated"
        app.go_online()
        app.sync()
        app.go("#sync")
        app.wait_screen("sync")
        statuses = app.log_statuses()
        assert "resync" in statuses and "applied" in statuses, statuses
        assert record_shown(app, "obs", colleague_id)
        app.assert_clean()
    assert Observation.objects.filter(description="Waiting while the server forgets cursors").exists()


def test_interrupted_photo_upload_resumes_with_head_then_put(live_server, world):
    photo = jpeg_bytes((20, 60, 160))
    sha = hashlib.sha256(photo).hexdigest()
    puts: list[str] = []

    def drop_after_storing(route):
        """The server stores the photo, but the answer never reaches the handheld."""
        if route.request.method == "PUT":
            puts.append(route.request.url)
            route.fetch()
            route.abort()
        else:
            route.continue_()

    with chromium_context() as context:
        app = Handheld(context, live_server.url).open()
        app.login("warden", PASSWORD)
        app.go_offline()
        app.new_observation(description="Burnt-out moped", incident="Vehicle abandoned (not stolen)", photo=photo)
        app.go_online()
        app.sync()  # the online event's sync, or this one: record sent, photo too
        first_put = len(puts)
        assert Attachment.objects.filter(sha256=sha).exists()

        # A second photo whose upload is cut off after the server stored it.
        other = jpeg_bytes((160, 160, 20))
        other_sha = hashlib.sha256(other).hexdigest()
        context.route("**/api/v1/attachments/**", drop_after_storing)
        app.go(f"#obs/{Observation.objects.get().pk}")
        app.wait_screen("observation")
        app.add_photo(other, "second.jpg")
        app.page.get_by_role("button", name="Save changes").click()
        app.wait_screen("home")
        app.sync(expect="failed")
        assert len(puts) == first_put + 1 and Attachment.objects.filter(sha256=other_sha).exists()
        app.home()
        assert "1 photo waiting" in app.text()

        # Next sync: HEAD says the server has it, so it is not sent again.
        context.unroute("**/api/v1/attachments/**")
        asked: list[str] = []
        context.route("**/api/v1/attachments/**", lambda route: (asked.append(route.request.method),
                                                                 route.continue_()))
        app.sync()
        app.home()
        assert "Nothing waiting to send" in app.text()
        assert asked == ["HEAD"], asked
        app.assert_clean()
    observation = Observation.objects.get()
    assert observation.photos == [sha, other_sha]


def test_a_rejected_change_stays_visible_with_its_reasons_until_fixed(live_server, world):
    with chromium_context() as context:
        app = Handheld(context, live_server.url).open()
        app.login("warden", PASSWORD)
        context.set_geolocation({"latitude": 53.545, "longitude": -2.6325, "accuracy": 6})  # Wigan: not theirs
        app.new_observation(description="Seen while passing through Wigan")
        app.sync()
        log = app.page.locator("#sync-log").inner_text()
        assert app.log_statuses()[0] == "rejected" and "outside the areas you may record in" in log, log
        assert "Open the record, correct what is listed" in log
        assert "area_forbidden" not in log  # words, not codes
        app.home()
        assert "Needs attention" in app.text() and "Change rejected" in app.text()
        assert Observation.objects.count() == 0

        app.page.get_by_role("link", name="Observation: Street drinking").first.click()
        app.wait_screen("observation")
        assert "outside the areas you may record in" in app.page.locator(".banner.bad").inner_text()
        context.set_geolocation(GEO)  # back in Leigh
        app.page.get_by_role("button", name="Use current GPS fix").click()
        app.wait_fix()
        app.page.get_by_role("button", name="Save changes").click()
        app.wait_screen("home")
        app.sync()
        assert app.log_statuses()[0] == "applied"
        app.home()
        assert "Needs attention" not in app.text()
        app.assert_clean()
    observation = Observation.objects.get()
    assert observation.area_id == world.areas["leigh"].pk
    assert observation.description == "Seen while passing through Wigan"
