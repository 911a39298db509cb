"""Password guessing against every place that takes a password: the review desk's and the
admin's sign-in pages, device enrolment and HTTP Basic on the API (fieldsync/login_guard.py).

Limits are small here (3 failures per username, 5 per address, a 2 second window) so the
window can be waited out for real; Redis is real, under a key prefix of this test's own.
"""
from __future__ import annotations

import base64
import json
import logging
import time

import pytest
from django.test import Client

from fieldsync.login_guard import client_address

from .conftest import fresh_address

PASSWORD = "fieldsync-demo"  # the demo password (warden_app/services/demo.py)
WINDOW = 2


@pytest.fixture
def guard(settings, own_cache, demo):
    settings.LOGIN_FAILURE_LIMIT = 3
    settings.LOGIN_FAILURE_ADDRESS_LIMIT = 5
    settings.LOGIN_FAILURE_WINDOW = WINDOW
    # The enrolment throttle (per address, all attempts) is the sync API's own; set high so
    # what refuses below is the login guard.
    settings.SYNC_ENROL_RATE = "1000/min"
    return demo


@pytest.fixture
def demo(db):
    from warden_app.services.demo import demo_seed

    return demo_seed(password=PASSWORD)


def desk_login(address: str, username: str, password: str, *, xff: str | None = None):
    client = Client(REMOTE_ADDR=address, **({"HTTP_X_FORWARDED_FOR": xff} if xff else {}))
    response = client.post("/review/login/", {"username": username, "password": password})
    return response, client


def admin_login(address: str, username: str, password: str):
    client = Client(REMOTE_ADDR=address)
    response = client.post("/admin/login/?next=/admin/", {"username": username, "password": password,
                                                          "next": "/admin/"})
    return response, client


def enrol(address: str, username: str, password: str):
    return Client(REMOTE_ADDR=address).post(
        "/api/v1/devices/enrol",
        json.dumps({"username": username, "password": password, "label": "h", "platform": "t"}),
        content_type="application/json")


def basic_get(address: str, username: str, password: str):
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return Client(REMOTE_ADDR=address).get("/api/v1/records/observation", HTTP_AUTHORIZATION=f"Basic {raw}")


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_guessing_from_one_address_stops_that_address_for_that_username_not_the_owner(guard):
    address = fresh_address()
    for _ in range(3):
        response, _ = desk_login(address, "supervisor_leigh", "wrong")
        assert response.status_code == 200 and b"Please enter a correct username" in response.content

    locked, client = desk_login(address, "supervisor_leigh", PASSWORD)
    assert locked.status_code == 429 and locked["Retry-After"] == str(WINDOW)
    assert b"Too many failed sign-in attempts" in locked.content
    assert not signed_in(client)
    # The owner from elsewhere is not locked out (nobody may lock another out by guessing).
    elsewhere, client = desk_login(fresh_address(), "supervisor_leigh", PASSWORD)
    assert elsewhere.status_code == 302 and signed_in(client)
    # Other users from the guessing address are not affected either (below its own limit).
    other, client = desk_login(address, "admin", PASSWORD)
    assert other.status_code == 302 and signed_in(client)

    time.sleep(WINDOW + 0.3)
    after, client = desk_login(address, "supervisor_leigh", PASSWORD)
    assert after.status_code == 302 and after["Location"] == "/review/" and signed_in(client)


def test_one_address_trying_many_usernames_is_stopped_but_others_sign_in(guard):
    sprayer = fresh_address()
    for username in ("warden_leigh", "warden_wigan", "pcso_leigh", "analyst", "dpo"):
        response, _ = desk_login(sprayer, username, "Winter2026!")
        assert response.status_code == 200
    locked, client = desk_login(sprayer, "supervisor_leigh", PASSWORD)
    assert locked.status_code == 429 and not signed_in(client)
    # The usernames tried once each are not locked: their owners sign in from elsewhere.
    fine, client = desk_login(fresh_address(), "warden_leigh", PASSWORD)
    assert fine.status_code == 302 and signed_in(client)


def test_a_successful_sign_in_is_not_a_failure_and_clears_the_usernames_count(guard):
    address = fresh_address()
    for password in ("typo-1", "typo-2", PASSWORD, "typo-3", "typo-4"):
        desk_login(address, "supervisor_leigh", password)
    # Two failures since the success: below the limit of 3.
    response, client = desk_login(address, "supervisor_leigh", PASSWORD)
    assert response.status_code == 302 and signed_in(client)


def test_the_admin_sign_in_shows_the_lockout_as_a_form_error(guard):
    address = fresh_address()
    for _ in range(3):
        response, _ = admin_login(address, "admin", "wrong")
        assert response.status_code == 200 and b"Please enter the correct username" in response.content
    locked, client = admin_login(address, "admin", PASSWORD)
    assert locked.status_code == 200 and b"Too many failed sign-in attempts" in locked.content
    assert not signed_in(client)
    time.sleep(WINDOW + 0.3)
    response, client = admin_login(address, "admin", PASSWORD)
    assert response.status_code == 302 and signed_in(client)


def test_enrolment_answers_429_with_retry_after_and_no_token(guard):
    from fieldsync.sync.models import Device

    address = fresh_address()
    for _ in range(3):
        assert enrol(address, "warden_leigh", "wrong").status_code == 401
    locked = enrol(address, "warden_leigh", PASSWORD)
    assert locked.status_code == 429 and locked.json()["code"] == "throttled"
    assert locked["Retry-After"] == str(WINDOW) and "token" not in locked.json()
    assert not Device.objects.filter(user__username="warden_leigh").exists()
    time.sleep(WINDOW + 0.3)
    assert enrol(address, "warden_leigh", PASSWORD).status_code == 201


def test_one_count_per_username_and_address_across_every_place_that_takes_a_password(guard):
    """Guesses spread over the desk, the admin and Basic still add up; then enrolment and
    the API refuse the right password too, from that address; the owner elsewhere gets in."""
    address = fresh_address()
    desk_login(address, "supervisor_leigh", "guess-1")
    admin_login(address, "supervisor_leigh", "guess-2")
    assert basic_get(address, "supervisor_leigh", "guess-3").status_code == 401
    assert enrol(address, "supervisor_leigh", PASSWORD).status_code == 429
    assert basic_get(address, "supervisor_leigh", PASSWORD).status_code == 429
    assert basic_get(fresh_address(), "supervisor_leigh", PASSWORD).status_code == 200


def test_http_basic_on_the_analysis_api_is_guarded(guard):
    address = fresh_address()
    for _ in range(3):
        assert basic_get(address, "analyst", "wrong").status_code == 401
    locked = basic_get(address, "analyst", PASSWORD)
    assert locked.status_code == 429 and locked.json()["code"] == "throttled"
    time.sleep(WINDOW + 0.3)
    assert basic_get(address, "analyst", PASSWORD).status_code == 200


def test_every_failure_is_logged_with_username_and_address_never_the_password(guard, caplog):
    address = fresh_address()
    with caplog.at_level(logging.WARNING, logger="fieldsync.login_guard"):
        desk_login(address, "supervisor_leigh", "s3cret-guess")
        enrol(address, "warden_leigh", "s3cret-guess")
    failures = [r.getMessage() for r in caplog.records if "sign-in failed" in r.getMessage()]
    assert len(failures) == 2
    assert "supervisor_leigh" in failures[0] and address in failures[0] and "/review/login/" in failures[0]
    assert "warden_leigh" in failures[1] and "/api/v1/devices/enrol" in failures[1]
    assert all("s3cret-guess" not in line for line in caplog.text.splitlines())


def test_the_address_is_the_one_the_proxy_wrote_not_one_the_client_chose(guard):
    """nginx sets X-Forwarded-For to the peer's address (ingress-nginx appends it): whatever a
    client puts in front of it does not give it a fresh address count."""
    proxy_seen = fresh_address()
    for n, username in enumerate(("warden_leigh", "warden_wigan", "pcso_leigh", "analyst", "dpo")):
        desk_login("10.0.0.2", username, "guess", xff=f"203.0.113.{n}, {proxy_seen}")
    locked, _ = desk_login("10.0.0.2", "admin", PASSWORD, xff=f"203.0.113.99, {proxy_seen}")
    assert locked.status_code == 429


# --- nobody may lock another person out ------------------------------------------------------

@pytest.fixture
def slow_guard(guard, settings):
    """The username's count must outlive the test (the 2 second window above would reset
    it), and the slow-down is capped low so its growth can be waited out for real."""
    settings.LOGIN_FAILURE_WINDOW = 120
    settings.LOGIN_SLOWDOWN_MAX_SECONDS = 3
    return guard


def test_an_attacker_on_many_addresses_is_slowed_and_the_owner_still_signs_in_from_their_usual_address(slow_guard):
    """The attack the username lockout invited: wrong passwords for the victim from many
    addresses. The attacker gets 429 + Retry-After almost every time; the victim, signing in
    from the address they used before, gets in on the desk, with Basic and at enrolment,
    during the attack and after it."""
    from fieldsync.sync.models import Device

    usual = fresh_address()
    first, _ = desk_login(usual, "supervisor_leigh", PASSWORD)  # an ordinary morning: now usual
    assert first.status_code == 302

    attacker = [fresh_address() for _ in range(30)]
    checked = slowed = 0
    victim = []
    started = time.monotonic()
    for n in range(90):
        if n % 3:
            response = basic_get(attacker[n % 30], "supervisor_leigh", f"guess-{n}")
            refused, failed = response.status_code == 429, response.status_code == 401
        else:
            response, _ = desk_login(attacker[n % 30], "supervisor_leigh", f"guess-{n}")
            refused = response.status_code == 429
            failed = response.status_code == 200 and b"Please enter a correct username" in response.content
        assert refused or failed, response.status_code
        if refused:
            slowed += 1
            assert 1 <= int(response["Retry-After"]) <= 3
        checked += failed
        if n % 30 == 15:  # the victim, in the middle of it, on each way in
            response, client = desk_login(usual, "supervisor_leigh", PASSWORD)
            victim.append(response.status_code == 302 and signed_in(client))
            victim.append(basic_get(usual, "supervisor_leigh", PASSWORD).status_code == 200)
            victim.append(enrol(usual, "supervisor_leigh", PASSWORD).status_code == 201)
    elapsed = time.monotonic() - started
    assert victim == [True] * 9
    # 3 free failures, then at most one check per gate opening (1, 2, 3, 3 … seconds apart).
    assert checked <= 3 + 1 + elapsed, (checked, elapsed)
    print(f"attack: 90 guesses from 30 addresses in {elapsed:.1f} s: {checked} checked, {slowed} answered 429")
    # After the attack (the count still running), the victim still gets in everywhere.
    response, client = desk_login(usual, "supervisor_leigh", PASSWORD)
    assert response.status_code == 302 and signed_in(client)
    assert basic_get(usual, "supervisor_leigh", PASSWORD).status_code == 200
    assert enrol(usual, "supervisor_leigh", PASSWORD).status_code == 201
    assert Device.objects.filter(user__username="supervisor_leigh", label="h").count() == 4
    # ... and the victim's sign-ins did not hand the attacker fresh free guesses: of two
    # guesses in a row, at least the second finds the gate shut.
    after = [basic_get(fresh_address(), "supervisor_leigh", f"after-{n}").status_code for n in range(2)]
    assert after[1] == 429, after


def test_the_slow_down_grows_per_failure_and_is_capped(slow_guard):
    """From addresses that are not usual for the account: 3 free failures, then one check
    per gate opening, 1, 2, then 3 seconds (the cap here) apart; the owner from a new address
    waits at most the cap and gets in."""
    waits = []
    for _ in range(3):
        assert basic_get(fresh_address(), "analyst", "wrong").status_code == 401
    for _ in range(3):
        assert basic_get(fresh_address(), "analyst", "wrong").status_code == 401  # through the gate
        refused = basic_get(fresh_address(), "analyst", "wrong")
        assert refused.status_code == 429 and refused.json()["code"] == "throttled"
        waits.append(int(refused["Retry-After"]))
        time.sleep(waits[-1] + 0.05)
    assert waits == [1, 2, 3]
    assert basic_get(fresh_address(), "analyst", PASSWORD).status_code == 200


def test_failures_from_a_usual_address_do_not_slow_the_account_elsewhere(slow_guard):
    """The owner's own typos at their desk are not an attack on their account."""
    usual = fresh_address()
    assert desk_login(usual, "analyst", PASSWORD)[0].status_code == 302
    for _ in range(2):
        assert desk_login(usual, "analyst", "typo")[0].status_code == 200
    assert desk_login(usual, "analyst", PASSWORD)[0].status_code == 302  # clears the pair
    for _ in range(2):
        assert desk_login(usual, "analyst", "typo")[0].status_code == 200
    # Four failures, none counted against the account: from a new address no gate at all.
    for _ in range(3):
        assert basic_get(fresh_address(), "analyst", "wrong").status_code == 401


def test_parallel_guesses_cannot_all_slip_through_an_open_gate(slow_guard):
    """Eight guesses from eight addresses reach the gate at the same moment (a barrier): the
    gate is one atomic Redis add(), so exactly one is checked and seven are refused."""
    import threading

    from fieldsync.login_guard import LoginLocked, login_check, login_failed

    class Request:
        path = "/api/v1/records/observation"

        def __init__(self, address):
            self.META = {"REMOTE_ADDR": address}

    for _ in range(3):
        request = Request(fresh_address())
        login_failed(request, "pcso_leigh", login_check(request, "pcso_leigh"))
    barrier, outcomes = threading.Barrier(8), []

    def guess(address):
        barrier.wait()
        try:
            login_check(Request(address), "pcso_leigh")
            outcomes.append("checked")
        except LoginLocked:
            outcomes.append("refused")

    threads = [threading.Thread(target=guess, args=(fresh_address(),)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["checked"] + ["refused"] * 7


def test_client_address_without_a_proxy_is_the_peer():
    class Request:
        META = {"REMOTE_ADDR": "192.0.2.7"}

    assert client_address(Request()) == "192.0.2.7"
    Request.META = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 192.0.2.8"}
    assert client_address(Request()) == "192.0.2.8"


def test_with_redis_down_sign_in_still_works_and_says_so_in_the_log(demo, settings, caplog):
    """The decision for web sign-in (docs/security.md): fail open, logged as an error, like
    the sync API's throttles. Nothing is counted, so nobody is locked out."""
    settings.CACHES = {**settings.CACHES, "default": {
        **settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
    }}
    settings.LOGIN_FAILURE_LIMIT = 1
    address = fresh_address()
    with caplog.at_level(logging.WARNING, logger="fieldsync.login_guard"):
        for _ in range(3):
            assert desk_login(address, "supervisor_leigh", "wrong")[0].status_code == 200
        response, client = desk_login(address, "supervisor_leigh", PASSWORD)
        assert response.status_code == 302 and signed_in(client)
        assert enrol(address, "warden_leigh", PASSWORD).status_code == 201
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and all("login guard unavailable" in r.getMessage() for r in errors)


def test_the_enrolment_throttle_counts_the_address_the_proxy_wrote(guard, settings):
    """The sync API's own per-address enrolment limit keys on the same address as the guard:
    padding X-Forwarded-For with a fresh prefix on every try does not reset it."""
    settings.SYNC_ENROL_RATE = "3/min"
    proxy_seen = fresh_address()

    def attempt(n):
        return Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}, {proxy_seen}").post(
            "/api/v1/devices/enrol",
            json.dumps({"username": "nobody", "password": "x", "label": "h", "platform": "t"}),
            content_type="application/json")

    assert [attempt(n).status_code for n in range(3)] == [401, 401, 401]
    refused = attempt(3)
    assert refused.status_code == 429 and refused["Retry-After"]
