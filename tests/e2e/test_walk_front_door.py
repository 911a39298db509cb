"""The front door in Chromium: the anonymous get the sign-in form at /, each role lands on
exactly its own doors (each of which opens), and a door that is not theirs says so with a way
to sign out. Every role, at 360 and 1366 px, with screenshots (test-artifacts/walk-<role>-*)."""
import pytest

from tests.e2e.walk import walker
from tests.sync.conftest import PASSWORD

pytestmark = [pytest.mark.e2e]

# The home page's doors, in order (warden_app/front_door/doors.py; tests/warden/test_front_door.py).
HOME = {
    "warden": ["Handheld app", "API tokens"],
    "pcso": ["Handheld app", "API tokens"],
    "supervisor": ["Handheld app", "Review desk", "Analysis", "Partner dashboard", "API tokens"],
    "analyst": ["Analysis", "Partner dashboard", "API tokens"],
    "partner": ["Partner dashboard", "API tokens"],
    "dpo": ["Data protection", "Administration", "API tokens"],
    "admin": ["Analysis", "Partner dashboard", "Administration", "API tokens"],
}
# A door each role may not open, and its 403 page's heading.
CLOSED = {"warden": ("/review/", "Review desk"), "pcso": ("/analysis/", "Analysis"),
          "supervisor": ("/dpo/", "Data protection"), "analyst": ("/dpo/", "Data protection"),
          "partner": ("/analysis/", "Analysis"), "dpo": ("/review/", "Review desk"),
          "admin": ("/dpo/", "Data protection")}


@pytest.fixture
def staff(world):
    """The e2e world has no DPO or admin: both are staff, as in the demo."""
    from tests.sync.conftest import password_hash
    from warden_app.models import User
    from warden_app.roles import Role
    from warden_app.services.roles import role_groups_ensure

    groups = role_groups_ensure()
    for username, role in (("dpo", Role.DPO), ("admin", Role.ADMIN)):
        user = User.objects.create(username=username, password=password_hash(), is_staff=True,
                                   organisation=world.users["analyst"].organisation)
        user.groups.add(groups[role])
    return world


@pytest.mark.parametrize("width", ["phone", "laptop"])
@pytest.mark.parametrize("role", list(HOME))
def test_each_role_signs_in_and_sees_exactly_its_doors(live_server, staff, browser, role, width):
    with walker(browser, live_server.url, role, width) as walk:
        walk.go("/")
        assert walk.page.locator("h1").inner_text() == "Sign in to fieldsync"
        walk.no_overflow()
        if role == "warden":
            walk.shot("sign-in")
        walk.sign_in(role, PASSWORD)
        assert walk.page.locator(".doors strong").all_inner_texts() == HOME[role]
        # The header lists the same doors.
        assert walk.page.locator(".site-doors a").all_inner_texts() == HOME[role]
        walk.no_overflow()
        walk.shot("home")
        # Every door shown opens (the page answers 200 with this session).
        for href in walk.page.locator(".doors a").evaluate_all("links => links.map(a => a.getAttribute('href'))"):
            assert walk.page.request.get(live_server.url + href).status == 200, href

        path, label = CLOSED[role]
        walk.go(path, status=403)
        assert walk.page.locator("h1").inner_text() == f"{label} is not open to you"
        assert walk.page.locator(".door-closed .doors a").all_inner_texts() == HOME[role]
        walk.no_overflow()
        walk.shot("door-closed")
        walk.page.get_by_role("button", name="Sign out and sign in as someone else").click()
        walk.page.wait_for_url(live_server.url + "/")
        assert walk.page.locator("#id_username").is_visible()
        walk.assert_clean()
