"""Driving fieldsync in a real Chromium: the one way every browser test launches Debian's
chromium and opens its contexts, and a page object for the warden handheld app (/warden/).

The app is used only as a warden would use it (labels, buttons); the tests look at the
server through the ORM and at the browser's storage through page.evaluate.
"""
from __future__ import annotations

import io
import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import connections

# Playwright's sync API runs an event loop in this thread; the ORM calls of the test body
# are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PIN = "482916"
# Leigh town centre, inside tests.sync.conftest.LEIGH_BOX, with a good fix.
GEO = {"latitude": 53.4975, "longitude": -2.517, "accuracy": 8}
PHONE = {"width": 360, "height": 780}
DESKTOP = {"width": 1280, "height": 1000}

# Every object store of every IndexedDB database of the origin, keys and values, with
# binary data decoded both as windows-1252 and UTF-8 so any plain text would show.
IDB_DUMP_JS = """async () => {
  const latin = new TextDecoder("windows-1252");
  const utf8 = new TextDecoder("utf-8");
  const ser = (v) => {
    if (v instanceof ArrayBuffer) return {bin: latin.decode(v) + "\\n" + utf8.decode(v), size: v.byteLength};
    if (ArrayBuffer.isView(v)) return ser(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
    if (Array.isArray(v)) return v.map(ser);
    if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, ser(x)]));
    return v;
  };
  const ask = (request) => new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  const out = [];
  for (const info of await indexedDB.databases()) {
    const db = await ask(indexedDB.open(info.name));
    for (const store of db.objectStoreNames) {
      const os = db.transaction(store).objectStore(store);
      const [keys, values] = await Promise.all([ask(os.getAllKeys()), ask(os.getAll())]);
      out.push({db: info.name, store, keys: ser(keys), values: ser(values)});
    }
    db.close();
  }
  return JSON.stringify(out);
}"""


def jpeg_bytes(colour=(200, 40, 40), size=(640, 480)) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(image)
    draw.rectangle([40, 40, size[0] - 40, size[1] - 40], outline=(255, 255, 255), width=8)
    draw.text((60, 60), "fieldsync e2e", fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


@contextmanager
def chromium():
    """Debian's chromium (make test installs it: missing, a test fails rather than skips),
    closed afterwards. One browser carries several contexts, each as separate as two phones."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
            # Inside Playwright's block the ORM ran in its own context (asgiref locals), on a
            # connection of its own: close it, or the test database cannot be dropped.
            connections.close_all()


def new_context(browser, **options):
    context = browser.new_context(**options)
    context.set_default_timeout(20_000)
    return context


def phone_context(browser, **options):
    """A context as a warden's phone: small screen, a good GPS fix, UK locale."""
    return new_context(browser, **{
        "viewport": PHONE, "geolocation": GEO, "permissions": ["geolocation"], "service_workers": "allow",
        "locale": "en-GB", "timezone_id": "Europe/London", **options})


@contextmanager
def chromium_context(**options):
    """A browser with one phone context, for a test that needs no more."""
    with chromium() as browser:
        yield phone_context(browser, **options)


def local_only(context, base_url: str) -> list[str]:
    """Cut the context off from everything but the live server: any other request is aborted.
    Answers the list the aborted URLs are added to."""
    server = urlsplit(base_url)
    aborted: list[str] = []

    def handle(route):
        url = urlsplit(route.request.url)
        if (url.scheme, url.hostname, url.port) == (server.scheme, server.hostname, server.port):
            route.continue_()
        else:
            aborted.append(route.request.url)
            route.abort()

    context.route("**/*", handle)
    return aborted


def sign_in(page, username: str, password: str, lands_on: str):
    """Fill in the Django login form the page shows (review desk or admin), send it, and wait
    to land on `lands_on` (a URL or glob)."""
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.locator("form", has=page.locator("#id_password")).locator("[type=submit]").click()
    page.wait_for_url(lands_on)


class Handheld:
    """The app in one page, driven through its labels and buttons."""

    def __init__(self, context, base_url: str, page=None):
        self.context = context
        self.base = base_url
        self.page = page or context.new_page()  # a walk's page (tests/e2e/walk.py) drives the app too
        self.errors: list[str] = []
        self.console: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))

    # --- navigation and waiting -------------------------------------------------------------

    def open(self):
        self.page.goto(f"{self.base}/warden/")
        self.page.wait_for_selector("body[data-ready=true]")
        return self

    def reload(self):
        self.page.reload()
        self.page.wait_for_selector("body[data-ready=true]")

    def poll(self, js: str, arg=None, timeout: float = 20_000):
        """Wait until `js` (a function) returns something truthy. Not wait_for_function: that
        evaluates its predicate with eval(), which the app's CSP (rightly) forbids."""
        deadline = time.monotonic() + timeout / 1000
        while True:
            value = self.page.evaluate(js, arg)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {js}; errors {self.errors}; console {self.console[-20:]}")
            self.page.wait_for_timeout(100)

    def screen(self) -> str:
        return self.page.evaluate("document.body.dataset.screen")

    def wait_screen(self, name: str, timeout: float = 20_000):
        self.page.wait_for_selector(f"body[data-screen={name}]", timeout=timeout)

    def wait_offline_ready(self):
        """The service worker is active, has cached the app and controls this page."""
        self.poll(
            "() => navigator.serviceWorker.controller !== null"
            " && document.documentElement.dataset.offlineReady === 'true'",
            timeout=30_000,
        )

    def screenshot(self, name: str):
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"handheld-{name}.png"), full_page=True)

    # --- network ----------------------------------------------------------------------------

    def go_offline(self):
        """No network at all: the browser is offline and every request is aborted."""
        self.context.set_offline(True)
        self.context.route("**/*", lambda route: route.abort())

    def go_online(self):
        self.context.unroute("**/*")
        self.context.set_offline(False)

    # --- sign in, lock ----------------------------------------------------------------------

    def login(self, username: str, password: str, pin: str = PIN, label: str = "Handheld 1"):
        page = self.page
        self.wait_screen("login")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_label("Name of this handheld").fill(label)
        page.get_by_label("Choose a PIN").fill(pin)
        page.get_by_label("PIN again").fill(pin)
        self.mark_sync()
        page.get_by_role("button", name="Sign in").click()
        self.wait_screen("home")
        self.wait_sync()

    def unlock(self, pin: str = PIN):
        self.wait_screen("locked")
        self.page.get_by_label("PIN", exact=True).fill(pin)
        self.page.get_by_role("button", name="Unlock").click()

    def lock(self):
        self.page.locator("#lock-now").click()
        self.wait_screen("locked")

    # --- sync -------------------------------------------------------------------------------

    def mark_sync(self):
        self.page.evaluate("delete document.body.dataset.lastSync")

    def wait_sync(self, expect: str = "ok", timeout: float = 30_000) -> str:
        self.page.wait_for_selector("body[data-last-sync]", timeout=timeout)
        result = self.page.evaluate("document.body.dataset.lastSync")
        assert result == expect, f"sync {result}, expected {expect}; errors {self.errors}; console {self.console}"
        return result

    def sync(self, expect: str = "ok"):
        self.go("#sync")
        self.mark_sync()
        self.page.locator("#sync-now").click()
        return self.wait_sync(expect)

    def go(self, hash_: str):
        self.page.evaluate("(h) => { location.hash = h; }", hash_)
        self.poll("(h) => location.hash === h", arg=hash_)

    def home(self):
        self.go("#home")
        self.wait_screen("home")

    # --- recording --------------------------------------------------------------------------

    def wait_fix(self):
        self.poll(
            "() => [...document.querySelectorAll('.loc-status')].some(e => e.textContent.startsWith('GPS fix'))")

    def new_observation(self, *, description: str, incident: str = "Street drinking", qualifier: str = "Nuisance",
                        actions=("Advice given",), person: dict | None = None, photo: bytes | None = None):
        page = self.page
        self.home()
        page.get_by_role("link", name="New observation").click()
        self.wait_screen("observation")
        page.get_by_label(qualifier, exact=True).check()
        page.get_by_label("Incident type").select_option(label=incident)
        page.get_by_label("Description", exact=True).fill(description)
        for action in actions:
            page.get_by_label(action, exact=True).check()
        if person:
            page.get_by_role("button", name="Add a person").click()
            page.locator("#person-1-description").fill(person.get("description", ""))
            if person.get("name"):
                page.locator("#person-1-name").fill(person["name"])
            if person.get("approx_age") is not None:
                page.locator("#person-1-age").fill(str(person["approx_age"]))
        if photo:
            self.add_photo(photo)
        self.wait_fix()
        page.get_by_role("button", name="Save observation").click()
        self.wait_screen("home")

    def add_photo(self, photo: bytes, name: str = "photo.jpg"):
        page = self.page
        before = page.locator(".photos img").count()
        page.locator("input[data-photo=files]").set_input_files(
            files=[{"name": name, "mimeType": "image/jpeg", "buffer": photo}])
        self.poll("(n) => document.querySelectorAll('.photos img').length > n", arg=before)

    def start_audit(self, title: str, notes: str = "") -> str:
        page = self.page
        self.home()
        page.get_by_role("link", name="Start street audit").click()
        self.wait_screen("audit-details")
        page.get_by_label("Title or route").fill(title)
        if notes:
            page.get_by_label("Notes").fill(notes)
        self.wait_fix()
        page.get_by_role("button", name="Start audit").click()
        self.wait_screen("audit")
        return page.evaluate("location.hash.split('/')[1]")

    def add_item(self, issue: str, grade: str | None = None, note: str = "", photo: bytes | None = None):
        page = self.page
        page.get_by_role("link", name="Add item").click()
        self.wait_screen("item")
        page.get_by_label("Issue type").select_option(label=issue)
        if grade:
            page.locator("#grade-wrap").get_by_label(re.compile(f"^{grade}:")).check()
        else:
            assert page.locator("#grade-wrap").is_hidden(), f"{issue} should not be graded"
        if note:
            page.get_by_label("Note").fill(note)
        if photo:
            self.add_photo(photo)
        self.wait_fix()
        page.get_by_role("button", name="Save item").click()
        self.wait_screen("audit")

    def finish_audit(self):
        self.page.get_by_role("button", name="Finish audit").click()
        self.poll(
            "() => document.getElementById('audit-finished') && "
            "document.getElementById('audit-finished').textContent !== 'In progress'")

    # --- storage ----------------------------------------------------------------------------

    def idb_dump(self) -> list[dict]:
        return json.loads(self.page.evaluate(IDB_DUMP_JS))

    def idb_names(self) -> list[str]:
        return self.page.evaluate("async () => (await indexedDB.databases()).map(d => d.name)")

    def cache_names(self) -> list[str]:
        return self.page.evaluate("async () => await caches.keys()")

    def log_statuses(self) -> list[str]:
        """The sync log's outcomes, newest first (applied, merged, conflict, rejected, uploaded,
        deleted, evicted, resync, error): the page says them in words, the tests read the codes."""
        return self.page.locator("#sync-log li").evaluate_all("els => els.map((e) => e.dataset.status)")

    def text(self) -> str:
        return self.page.locator("body").inner_text()

    def assert_clean(self):
        """No script errors, and nothing the page's CSP blocked."""
        assert not self.errors, self.errors
        assert not [line for line in self.console if "Content Security Policy" in line], self.console
