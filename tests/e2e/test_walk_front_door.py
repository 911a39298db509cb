"""The front door in Chromium: the anonymous get the sign-in form at /, each role lands on its
own doors, and a door that is not theirs says so with a way to sign out."""
import pytest

from tests.e2e.walk import walker
from tests.sync.conftest import PASSWORD

pytestmark = [pytest.mark.e2e]


@pytest.mark.parametrize("width", ["phone", "laptop"])
def test_an_analyst_signs_in_sees_their_doors_and_a_closed_one(live_server, world, browser, width):
    with walker(browser, live_server.url, "analyst", width) as walk:
        walk.go("/")
        assert walk.page.locator("h1").inner_text() == "Sign in to fieldsync"
        walk.shot("sign-in")
        walk.sign_in("analyst", PASSWORD)
        labels = walk.page.locator(".doors strong").all_inner_texts()
        assert "Analysis" in labels and "Data protection" not in labels and "Review desk" not in labels
        walk.no_overflow()
        walk.shot("home")
        walk.go("/dpo/", status=403)
        assert "Data protection is not open to you" in walk.page.locator("h1").inner_text()
        walk.no_overflow()
        walk.shot("door-closed")
        walk.page.get_by_role("button", name="Sign out and sign in as someone else").click()
        walk.page.wait_for_url(live_server.url + "/")
        assert walk.page.locator("#id_username").is_visible()
        walk.assert_clean()
