"""The demo admin's walk in Chromium, at 360 and 1366 px: signed in at "/", into the admin
from home, then areas (an area's map drawn by the Leaflet widget from the project's own
files), teams, users, sharing rules (one added, after a refusal in words), purpose grants (one
issued from the form) and API tokens (one revoked); nothing leaves 127.0.0.1, no console error,
screenshots under test-artifacts/ (the laptop's admin home also as docs/img/admin.png)."""
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.utils import timezone

from tests.e2e.walk import walker

pytestmark = [pytest.mark.e2e]

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


@pytest.fixture
def demo_world(transactional_db):
    """seed_demo's partnership (demo password), committed for the live server, with an
    analyst's token and a grant the admin issued earlier, so no list is empty."""
    from warden_app.services.api_tokens import api_token_create
    from warden_app.services.demo import DEMO_PASSWORD, demo_seed
    from warden_app.services.sharing import purpose_grant_issue

    cache.clear()  # sign-in throttle counters of earlier tests live in Redis
    demo = demo_seed()
    analyst = demo.users["analyst"]
    api_token_create(user=analyst, name="QGIS laptop")
    api_token_create(user=demo.users["supervisor_leigh"], name="GDAL scripts")
    purpose_grant_issue(granted_by=demo.users["admin"], user=analyst, record_type="observation",
                        fields=["description"], purpose="Repeat locations study for the community safety plan",
                        valid_until=timezone.now() + timedelta(days=14))
    return demo, DEMO_PASSWORD


def fits(walk):
    """No sideways scroll of the page itself. Django's responsive admin puts a changelist's
    table in its own box (`#changelist .results`, overflow-x: auto), which scrolls inside the
    page on a phone: that is the admin's intended narrow layout, so only the document's
    width is held to the window, never the table's."""
    walk.no_overflow()


def open_from_index(walk, live_url: str, label: str, path: str):
    """Follow the admin index's link to a model's list, as an admin would."""
    page = walk.page
    page.goto(live_url + "/admin/")
    page.locator(f"#content-main a[href='{path}']").first.click()
    page.wait_for_url(live_url + path)
    assert page.locator("#content h1").inner_text().startswith(label), page.locator("#content h1").inner_text()


@pytest.mark.parametrize("width", ["phone", "laptop"])
def test_the_admin_walks_areas_teams_users_and_the_sharing_protocol(live_server, demo_world, browser, width):
    from warden_app.models import ApiToken, PurposeGrant, SharingRule

    demo, password = demo_world
    live = live_server.url
    with walker(browser, live, "admin", width) as walk:
        page = walk.page
        walk.sign_in("admin", password)
        page.locator(".doors a", has_text="Administration").click()
        page.wait_for_url(live + "/admin/")
        assert page.locator("#site-name").inner_text() == "fieldsync administration"
        index = page.locator("#content-main").inner_text()
        for label in ("Areas", "Teams", "Users", "Sharing rules", "Purpose grants", "API tokens"):
            assert label in index, label
        assert "Access log" not in index  # the DPO's alone
        fits(walk)
        home = walk.shot("home")
        if width == "laptop":
            shutil.copyfile(home, DOCS_IMG / "admin.png")

        # Areas: the list, then one area's map, drawn offline from the project's Leaflet.
        open_from_index(walk, live, "Select area", "/admin/warden_app/area/")
        assert page.locator("#result_list tbody tr").count() == len(demo.areas)
        fits(walk)
        walk.shot("areas")
        page.locator("#result_list tbody tr th a").first.click()
        page.locator("#id_geom-map.leaflet-container").wait_for(state="visible", timeout=15_000)
        page.locator("#id_geom-map .leaflet-overlay-pane path").first.wait_for(timeout=10_000)
        assert page.locator("#id_geom-map .leaflet-draw").count() == 1  # editable: Leaflet.draw's toolbar
        fits(walk)
        walk.shot("area-map")

        open_from_index(walk, live, "Select team", "/admin/warden_app/team/")
        assert page.locator("#result_list tbody tr").count() == len(demo.teams)
        fits(walk)
        walk.shot("teams")
        page.locator("#result_list tbody tr th a", has_text="Leigh").click()
        page.locator("#id_field_staff_from, #id_field_staff_to").first.wait_for()  # the two-box picker drawn
        fits(walk)
        walk.shot("team")

        open_from_index(walk, live, "Select user", "/admin/warden_app/user/")
        assert page.locator("#result_list tbody tr").count() == len(demo.users)
        fits(walk)
        walk.shot("users")

        # Sharing rules: the default clause in words, then its page.
        open_from_index(walk, live, "Select sharing rule", "/admin/warden_app/sharingrule/")
        row = page.locator("#result_list tbody tr").first
        assert "Wardens, PCSOs of any organisation" in row.inner_text()
        assert "Observation: description, persons involved, photos" in row.inner_text()
        fits(walk)
        walk.shot("sharing-rules")
        row.locator("th a").click()
        page.wait_for_load_state()
        assert "see Observation: description, persons involved, photos in their own organisation's records" \
            in page.locator(".field-summary").inner_text()
        fits(walk)
        walk.shot("sharing-rule")

        # A new clause: "one organisation" with none chosen is refused in words, then saved.
        page.goto(live + "/admin/warden_app/sharingrule/add/")
        page.fill("#id_key", "police-pcsos-see-council-personal")
        page.fill("#id_note", "Protocol 4.2: PCSOs see personal details in the council's records.")
        page.locator("#id_viewer_scope input[value=organisation]").check()
        page.locator("#id_viewer_roles input[value=pcso]").check()
        page.locator("#id_owner_scope input[value=organisation]").check()
        page.select_option("#id_owner_organisation", label="Wigan Council")
        page.locator("#id_field_groups input[value=personal]").check()
        page.locator("input[name=_save]").click()
        page.wait_for_load_state()
        assert "Choose the organisation whose staff see the fields." in page.locator(".errorlist").inner_text()
        fits(walk)
        walk.shot("sharing-rule-refused")
        page.select_option("#id_viewer_organisation", label="Greater Manchester Police")
        page.locator("input[name=_save]").click()
        page.wait_for_url(live + "/admin/warden_app/sharingrule/")
        assert "PCSOs of Greater Manchester Police" in page.locator("#result_list").inner_text()

        # Purpose grants: the list, then one issued through the form.
        open_from_index(walk, live, "Select purpose grant", "/admin/warden_app/purposegrant/")
        assert "In force" in page.locator("#result_list").inner_text()
        fits(walk)
        walk.shot("purpose-grants")
        page.locator(".object-tools a.addlink").click()
        page.wait_for_url(live + "/admin/warden_app/purposegrant/add/")
        page.select_option("#id_user", label="analyst")
        page.locator("#id_fields input[value=persons_involved]").check()
        page.fill("#id_purpose", "Case 2026-77: repeat victim review with the police")
        page.fill("#id_valid_until_0", (timezone.localdate() + timedelta(days=7)).isoformat())
        page.fill("#id_valid_until_1", "17:00:00")
        fits(walk)
        walk.shot("purpose-grant-form")
        page.locator("input[name=_save]").click()
        page.wait_for_url(live + "/admin/warden_app/purposegrant/")
        assert "was added successfully" in page.locator(".messagelist").inner_text()
        fits(walk)
        walk.shot("purpose-grant-issued")

        # API tokens: listed without secrets, one revoked with the action.
        open_from_index(walk, live, "Select API token", "/admin/warden_app/apitoken/")
        listing = page.locator("#result_list").inner_text()
        assert "QGIS laptop" in listing and "GDAL scripts" in listing and "Active" in listing
        fits(walk)
        walk.shot("api-tokens")
        page.locator("#result_list tbody tr", has_text="QGIS laptop").locator("input.action-select").check()
        page.select_option("select[name=action]", "revoke_tokens")
        page.locator("button[name=index]").click()
        page.wait_for_load_state()
        assert "1 API token(s) revoked." in page.locator(".messagelist").inner_text()
        assert "Revoked" in page.locator("#result_list tbody tr", has_text="QGIS laptop").inner_text()
        fits(walk)
        walk.shot("api-token-revoked")
        walk.assert_clean()

    grant = PurposeGrant.objects.get(purpose__startswith="Case 2026-77")
    assert grant.granted_by == demo.users["admin"] and grant.fields == ["persons_involved"]
    assert ApiToken.objects.get(name="QGIS laptop").revoked_at is not None
    assert ApiToken.objects.get(name="GDAL scripts").revoked_at is None
    rule = SharingRule.objects.get(key="police-pcsos-see-council-personal")
    assert (rule.viewer_organisation.name, rule.owner_organisation.name) == (
        "Greater Manchester Police", "Wigan Council")
