"""Personal API tokens: `manage.py create_api_token` prints one; `Authorization: Bearer fsp_…`
authenticates as its user until revoked; device tokens open nothing here."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from warden_app.models import ApiToken
from warden_app.services.api_tokens import api_token_create, api_token_hash, api_token_revoke

URL = "/api/v1/records/observation"


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_the_command_prints_a_token_that_is_stored_only_as_a_hash(world):
    out = StringIO()
    call_command("create_api_token", "analyst", "--name", "QGIS laptop", stdout=out)
    token = out.getvalue().strip()
    assert token.startswith("fsp_") and len(token) > 40
    row = ApiToken.objects.get()
    assert row.user == world.users["analyst"] and row.name == "QGIS laptop"
    assert row.token_hash == api_token_hash(token) and token not in row.token_hash
    response = world.client(None).get(URL, **bearer(token))
    assert response.status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_the_command_refuses_unknown_users(world):
    with pytest.raises(CommandError):
        call_command("create_api_token", "nobody", stdout=StringIO())


def test_a_revoked_or_unknown_token_is_401(world):
    row, token = api_token_create(user=world.users["analyst"])
    api_token_revoke(token=row)
    assert world.client(None).get(URL, **bearer(token)).status_code == 401
    assert world.client(None).get(URL, **bearer("fsp_not-a-token")).status_code == 401


def test_a_disabled_users_token_is_401(world):
    _, token = api_token_create(user=world.users["analyst"])
    world.users["analyst"].is_active = False
    world.users["analyst"].save()
    assert world.client(None).get(URL, **bearer(token)).status_code == 401


def test_a_field_staff_token_is_403(world):
    _, token = api_token_create(user=world.users["warden_leigh"])
    assert world.client(None).get(URL, **bearer(token)).status_code == 403


def test_a_device_token_opens_nothing_here(world):
    handheld = world.handheld("warden_leigh")
    assert handheld.token.startswith("fsd_")
    response = world.client(None).get(URL, **bearer(handheld.token))
    assert response.status_code == 401
    assert world.client(None).get("/ogc/collections", **bearer(handheld.token)).status_code == 401
