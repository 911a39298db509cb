"""A role's walk through its pages in Chromium, the way issue #17's "done when" asks: at a
phone's 360 px and a laptop's 1366 px, cut off from everything but the live server, with every
console error and page error collected and a full-page screenshot of each stop saved under
test-artifacts/ (CI keeps them)."""
from __future__ import annotations

from contextlib import contextmanager

from tests.e2e.handheld_support import ARTIFACTS, local_only, new_context

WIDTHS = {"phone": {"width": 360, "height": 780}, "laptop": {"width": 1366, "height": 900}}


class Walker:
    def __init__(self, context, base_url: str, role: str, width_name: str):
        self.context, self.base_url, self.role, self.width_name = context, base_url, role, width_name
        self.aborted = local_only(context, base_url)
        self.page = context.new_page()
        self.errors: list[str] = []
        # Pages the walk opens knowing they answer 4xx (a closed door): Chromium reports their
        # load as a console error, which is the point of the visit, not a fault of the page.
        self.refused: set[str] = set()
        self.page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        self.page.on("console", self._console)

    def _console(self, msg):
        if msg.type != "error":
            return
        if msg.text.startswith("Failed to load resource") and msg.location.get("url") in self.refused:
            return
        self.errors.append(f"console: {msg.text} ({msg.location.get('url')})")

    def go(self, path: str, status: int = 200):
        """Open a page and check its status (a refusal is asked for with `status`)."""
        if status >= 400:
            self.refused.add(self.base_url + path)
        response = self.page.goto(self.base_url + path)
        assert response.status == status, f"{path}: {response.status}, expected {status}"
        return response

    def sign_in(self, username: str, password: str):
        """Through the front door, as a person would: / shows the form, home follows."""
        self.go("/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", password)
        self.page.locator("form", has=self.page.locator("#id_password")).locator("[type=submit]").click()
        self.page.wait_for_url(self.base_url + "/")

    def shot(self, stop: str) -> str:
        """Save the page as test-artifacts/walk-<role>-<stop>-<width>.png; answers the path."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"walk-{self.role}-{stop}-{self.width_name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return str(path)

    def no_overflow(self):
        """Nothing wider than the window: a page that scrolls sideways on a phone is broken."""
        wide = self.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 1, f"{self.page.url} is {wide}px wider than the {self.width_name} window"

    def assert_clean(self):
        assert self.aborted == [], f"requests left 127.0.0.1: {self.aborted}"
        assert self.errors == [], self.errors


@contextmanager
def walker(browser, base_url: str, role: str, width_name: str, **options):
    context = new_context(browser, viewport=WIDTHS[width_name], locale="en-GB",
                          timezone_id="Europe/London", **options)
    try:
        yield Walker(context, base_url, role, width_name)
    finally:
        context.close()
