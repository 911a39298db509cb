"""An owner (an analyst: not a desk supervisor) manages their personal API tokens on the
desk in a real Chromium (CSP on, nothing but the live server reachable): signs in, makes a
token and sees it once, uses it, and revokes it through the page's confirmation dialog."""
import pytest
from django.core.cache import cache
from django.test import Client

from tests.e2e.handheld_support import ARTIFACTS, DESKTOP, local_only, sign_in
from tests.sync.conftest import PASSWORD, build_world
from warden_app.models import ApiToken

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def token_world(transactional_db):
    cache.clear()
    return build_world()


def test_an_owner_makes_sees_once_and_revokes_a_token(live_server, token_world, browser):
    page_errors: list[str] = []
    context = browser.new_context(viewport=DESKTOP)
    aborted = local_only(context, live_server.url)
    page = context.new_page()
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.on("console", lambda m: page_errors.append(m.text) if m.type == "error" else None)

    page.goto(f"{live_server.url}/review/tokens/")
    page.wait_for_url("**/review/login/?next=/review/tokens/")
    sign_in(page, "analyst", PASSWORD, lands_on=f"{live_server.url}/review/tokens/")
    assert "You have no API tokens." in page.content()

    page.fill("#id_name", "QGIS laptop")
    page.click("button:has-text('Make a token')")
    page.locator("#new-token").wait_for(timeout=10_000)
    token = page.locator("#new-token").inner_text().strip()
    assert token.startswith("fsp_")
    row = ApiToken.objects.get(user=token_world.users["analyst"])
    assert row.name == "QGIS laptop"
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert Client().get("/api/v1/records/observation", **bearer).status_code == 200
    page.screenshot(path=str(ARTIFACTS / "review-desk-tokens.png"), full_page=True)

    # Shown once: the list, opened again, has its prefix and never the token.
    page.goto(f"{live_server.url}/review/tokens/")
    assert token not in page.content() and row.prefix in page.content()

    # Dismissing the dialog revokes nothing; accepting it revokes.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.locator(f"tr[data-token-id='{row.pk}'] button:has-text('Revoke')").click()
    page.wait_for_timeout(300)
    row.refresh_from_db()
    assert row.revoked_at is None
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f"tr[data-token-id='{row.pk}'] button:has-text('Revoke')").click()
    page.locator(".messages", has_text="is revoked").wait_for(timeout=10_000)
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert page.locator(f"tr[data-token-id='{row.pk}'] button").count() == 0
    assert Client().get("/api/v1/records/observation", **bearer).status_code == 401

    assert not aborted, f"requests to other hosts: {aborted}"
    assert not page_errors, page_errors
    context.close()
