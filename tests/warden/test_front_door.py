"""The front door: sign-in at /, each role's home page of doors, the one 403 page.

One table (DOORS_OF) says which doors each role of warden_app/roles.py opens, plus a user with
no role and an inactive one. It is checked twice, with the requests a browser sends: the doors
on the home page, and each door's own URL (200, a redirect to a sign-in page, or the 403 page
with sign-out), so a door shown always opens and a door not shown never does.
"""
from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group
from django.test import Client, RequestFactory

from fieldsync.error_pages import permission_denied
from fieldsync.login_guard import LOCKED_MESSAGE
from tests.security.conftest import fresh_address, own_cache  # noqa: F401 (a fixture)
from warden_app.roles import Role

pytestmark = pytest.mark.django_db

PASSWORD = "fieldsync-demo"
ALL_DOORS = ("handheld", "desk", "analysis", "partner", "dpo", "admin", "tokens")
# Who opens what (product.md's roles; docs/front-door.md). Written out, not derived from
# doors.py, so a change to a door's rule must change this table too.
DOORS_OF = {
    "warden_leigh": {"handheld", "tokens"},
    "pcso_leigh": {"handheld", "tokens"},
    "supervisor_leigh": {"handheld", "desk", "analysis", "partner", "tokens"},
    "analyst": {"analysis", "partner", "tokens"},
    "partner_fire": {"partner", "tokens"},
    "dpo": {"dpo", "admin", "tokens"},
    "admin": {"analysis", "partner", "admin", "tokens"},
    "no_role": {"tokens"},
}
ROLE_OF = {"warden_leigh": Role.WARDEN, "pcso_leigh": Role.PCSO, "supervisor_leigh": Role.SUPERVISOR,
           "analyst": Role.ANALYST, "partner_fire": Role.PARTNER_VIEWER, "dpo": Role.DPO, "admin": Role.ADMIN}
# Each door's page, and where the anonymous are sent to sign in.
URL = {"desk": "/review/", "analysis": "/analysis/", "partner": "/partner/", "dpo": "/dpo/",
       "admin": "/admin/", "tokens": "/review/tokens/"}
SIGN_IN = {"desk": "/review/login/?next=", "tokens": "/review/login/?next=", "admin": "/admin/login/?next=",
           "analysis": "/login/?next=", "partner": "/login/?next=", "dpo": "/login/?next="}
LABELS = {"handheld": "Handheld app", "desk": "Review desk", "analysis": "Analysis", "partner": "Partner dashboard",
          "dpo": "Data protection", "admin": "Administration", "tokens": "API tokens"}


@pytest.fixture
def people(db, own_cache):  # noqa: F811
    """The demo partnership's one user per role, a user with no role and an inactive one."""
    from warden_app.models import User
    from warden_app.services.demo import demo_seed

    demo = demo_seed(password=PASSWORD)
    users = dict(demo.users)
    users["no_role"] = User.objects.create_user("no_role", password=PASSWORD,
                                                organisation=demo.users["analyst"].organisation)
    inactive = User.objects.create_user("inactive", password=PASSWORD, is_active=False,
                                        organisation=demo.users["analyst"].organisation)
    inactive.groups.add(Group.objects.get(name=Role.SUPERVISOR))
    users["inactive"] = inactive
    return users


def sign_in(username: str, password: str = PASSWORD, **data):
    client = Client(REMOTE_ADDR=fresh_address())
    response = client.post("/login/", {"username": username, "password": password, **data})
    return client, response


def home_doors(client) -> set[str]:
    html = client.get("/").content.decode()
    return {key for key in ALL_DOORS if f'class="door door-{key}"' in html}


def assert_403_page(response, label: str | None, where):
    assert response.status_code == 403, (where, response.status_code)
    assert response["Content-Type"].startswith("text/html"), where
    html = response.content.decode()
    heading = f"{label} is not open to you" if label else "is not open to you"
    assert heading in html, (where, html[:500])
    assert 'action="/logout/"' in html and "Sign out" in html, where


def test_every_role_appears_in_the_table():
    assert set(ROLE_OF.values()) == set(Role)


@pytest.mark.parametrize("username", sorted(DOORS_OF))
def test_the_home_page_shows_exactly_the_role_s_doors(people, username):
    client, response = sign_in(username)
    assert response.status_code == 302 and response["Location"] == "/", response.content[:300]
    assert home_doors(client) == DOORS_OF[username]
    if username == "no_role":
        assert "no role yet" in client.get("/").content.decode()


@pytest.mark.parametrize("username", sorted(DOORS_OF))
def test_a_door_shown_opens_and_a_door_not_shown_is_the_403_page(people, username):
    client, _ = sign_in(username)
    for key, url in URL.items():
        response = client.get(url)
        if key in DOORS_OF[username]:
            assert response.status_code == 200, (username, key, response.status_code)
        else:
            assert_403_page(response, LABELS[key], (username, key))


@pytest.mark.parametrize("username", sorted(DOORS_OF))
def test_the_handheld_door_is_enrolment(people, username, settings):
    """The handheld's shell is public (it is cached to start offline and holds nothing); what
    the door opens is enrolment, which refuses every role the door is not shown to."""
    settings.SYNC_ENROL_RATE = "1000/min"
    assert Client().get("/warden/").status_code == 200
    response = Client(REMOTE_ADDR=fresh_address()).post(
        "/api/v1/devices/enrol", json.dumps({"username": username, "password": PASSWORD, "label": "t"}),
        content_type="application/json")
    assert response.status_code == (201 if "handheld" in DOORS_OF[username] else 403), (username, response.content)


def test_the_anonymous_and_the_inactive_are_sent_to_sign_in(people):
    client, response = sign_in("inactive")
    assert response.status_code == 200 and "Please enter a correct username and password" in response.content.decode()
    for who, c in (("anonymous", Client()), ("inactive", client)):
        assert b'id="id_username"' in c.get("/").content, who
        for key, url in URL.items():
            response = c.get(url)
            assert response.status_code == 302, (who, key, response.status_code)
            assert response["Location"] == SIGN_IN[key] + url, (who, key, response["Location"])
    # Signed in once, then deactivated: the next request is anonymous again.
    client, _ = sign_in("analyst")
    people["analyst"].is_active = False
    people["analyst"].save()
    assert client.get("/analysis/")["Location"].startswith("/login/?next=")


def test_after_sign_in_the_page_asked_for_opens(people):
    client = Client(REMOTE_ADDR=fresh_address())
    assert client.get("/dpo/")["Location"] == "/login/?next=/dpo/"
    page = client.get("/login/?next=/dpo/").content.decode()
    assert 'name="next" value="/dpo/"' in page
    response = client.post("/login/", {"username": "dpo", "password": PASSWORD, "next": "/dpo/"})
    assert response["Location"] == "/dpo/"
    assert client.get("/dpo/").status_code == 200


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example/",
                                    "https:evil.example", " https://evil.example/"])
def test_next_never_leaves_the_site(people, target):
    client, response = sign_in("analyst", next=target)
    assert response.status_code == 302
    assert response["Location"] == "/", response["Location"]
    # The same through the querystring, as a link would carry it.
    client = Client(REMOTE_ADDR=fresh_address())
    response = client.post("/login/?next=" + target, {"username": "analyst", "password": PASSWORD})
    assert response["Location"] == "/"


def test_sign_out_goes_back_to_the_front_door(people):
    client, _ = sign_in("analyst")
    response = client.post("/logout/")
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/analysis/").status_code == 302


def test_the_login_guard_locks_the_front_door_with_a_form_error(people, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    client = Client(REMOTE_ADDR=fresh_address())
    for _ in range(2):
        response = client.post("/login/", {"username": "analyst", "password": "wrong"})
        assert response.status_code == 200
    # Locked: even the right password is refused, before it is checked, with a form error.
    response = client.post("/login/", {"username": "analyst", "password": PASSWORD})
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert LOCKED_MESSAGE in response.content.decode()
    assert "_auth_user_id" not in client.session
    # The front door's / answers the same (the anonymous' home is the sign-in form).
    assert client.post("/", {"username": "analyst", "password": PASSWORD}).status_code in (405, 429)


def test_the_desk_s_own_permission_denied_is_the_front_door_page(people):
    """The desk raises PermissionDenied for a non-supervisor; handler403 renders the 403 page."""
    client, _ = sign_in("analyst")
    for url in ("/review/", "/review/conflicts/", "/review/devices/"):
        response = client.get(url)
        assert_403_page(response, "Review desk", url)
        assert "The review desk is for supervisors." in response.content.decode()
        assert 'href="/analysis/"' in response.content.decode()  # the analyst's own doors


def test_the_admin_refuses_a_signed_in_non_staff_user_with_the_403_page(people):
    client, _ = sign_in("warden_leigh")
    for url in ("/admin/", "/admin/warden_app/", "/admin/warden_app/observation/"):
        assert_403_page(client.get(url), "Administration", url)
    # The admin's own sign-in still works, for staff and anonymous alike.
    assert Client().get("/admin/")["Location"].startswith("/admin/login/")
    staff, _ = sign_in("admin")
    assert staff.get("/admin/").status_code == 200


def test_an_api_path_keeps_the_protocol_shape_for_a_403():
    from django.core.exceptions import PermissionDenied

    request = RequestFactory().get("/api/v1/anything")
    response = permission_denied(request, PermissionDenied("No."))
    assert response.status_code == 403
    assert json.loads(response.content) == {"code": "permission_denied", "message": "No.", "fields": {}}


def test_a_403_leaves_no_traceback_in_the_log(people):
    """What the console (make run's terminal) shows for a refused page: one line, no traceback."""
    import io
    import logging

    from fieldsync.log_filters import ClientErrorsWithoutTraceback

    console = next(h for h in logging.getLogger().handlers
                   if any(isinstance(f, ClientErrorsWithoutTraceback) for f in h.filters))
    client, _ = sign_in("analyst")
    out = io.StringIO()
    saved = console.setStream(out)
    try:
        assert client.get("/review/").status_code == 403
    finally:
        console.setStream(saved)
    assert "Forbidden (Permission denied): /review/" in out.getvalue()
    assert "Traceback" not in out.getvalue()
