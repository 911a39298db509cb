"""Bad input at every level (sync protocol sections 2 and 4): a bad request is answered in
the protocol's one error shape with the right status and stores nothing; a bad mutation
inside a good request is rejected on its own and quarantined. Real HTTP stack, real
PostgreSQL and Redis (throttle counters)."""
from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from datetime import timedelta

import pytest
from django.test import Client, override_settings

from .conftest import IN_LEIGH, PASSWORD, mutation, now_iso, observation_data, password_hash, point
from .pushkit import (
    assert_error,
    assert_not_stored,
    assert_rejected,
    counts,
    model_of,
    quarantined,
    receipts,
)

PUSH = "/api/v1/sync/push"


def post_raw(handheld, body: bytes | str, content_type: str = "application/json", path: str = PUSH):
    # CONTENT_TYPE given explicitly: the test client drops it for an empty body.
    return handheld.client.generic("POST", path, body, content_type=content_type, CONTENT_TYPE=content_type,
                                   **handheld.auth)


def device_row(handheld):
    from fieldsync.sync.models import Device

    return Device.objects.get(pk=handheld.device_id)


@pytest.fixture
def nothing_stored(world, warden):
    """Counts the tables before the test's bad request and checks after it that nothing
    was stored and the device was not marked as having pushed."""
    before = counts()
    yield warden
    assert counts() == before
    assert device_row(warden).last_push_at is None


# --- the request as a whole ------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b'{"mutations": [',
    b"not json at all",
    b"",
    b'{"mutations": []}}',
    b"\xff\xfe{}",
])
def test_malformed_json_is_400(nothing_stored, body):
    assert_error(post_raw(nothing_stored, body), 400, "malformed_json")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_in_the_json_text_are_malformed(nothing_stored, literal):
    m = mutation("observation", "create", uuid.uuid4(), observation_data())
    text = json.dumps({"mutations": [m]}).replace('"accuracy_m": 6.5', f'"accuracy_m": {literal}')
    assert literal in text
    assert_error(post_raw(nothing_stored, text), 400, "malformed_json")


@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml", "",
])
def test_wrong_media_type_is_415(nothing_stored, content_type):
    m = mutation("observation", "create", uuid.uuid4(), observation_data())
    body = json.dumps({"mutations": [m]})
    assert_error(post_raw(nothing_stored, body, content_type), 415, "unsupported_media_type")


def test_json_with_a_charset_is_accepted(world, warden):
    m = mutation("observation", "create", uuid.uuid4(), observation_data())
    response = post_raw(warden, json.dumps({"mutations": [m]}), "application/json; charset=utf-8")
    assert response.status_code == 200
    assert response.json()["results"][0]["status"] == "applied"


def test_a_body_over_the_limit_is_413(nothing_stored):
    m = mutation("observation", "create", uuid.uuid4(), observation_data(description="x" * 3000))
    body = json.dumps({"mutations": [m]})
    with override_settings(SYNC_MAX_BODY_BYTES=2048):
        assert len(body) > 2048
        assert_error(post_raw(nothing_stored, body), 413, "too_large")


def test_a_body_under_the_limit_is_accepted(world, warden):
    m = mutation("observation", "create", uuid.uuid4(), observation_data())
    body = json.dumps({"mutations": [m]})
    with override_settings(SYNC_MAX_BODY_BYTES=len(body)):
        assert post_raw(warden, body).status_code == 200


def test_more_mutations_than_the_limit_is_413(nothing_stored):
    mutations = [mutation("observation", "create", uuid.uuid4(), observation_data()) for _ in range(4)]
    with override_settings(SYNC_MAX_MUTATIONS=3):
        assert_error(post_raw(nothing_stored, json.dumps({"mutations": mutations})), 413, "too_many_mutations")


def test_as_many_mutations_as_the_limit_is_accepted(world, warden):
    mutations = [mutation("observation", "create", uuid.uuid4(), observation_data()) for _ in range(3)]
    with override_settings(SYNC_MAX_MUTATIONS=3):
        results = warden.push(mutations)["results"]
    assert [r["status"] for r in results] == ["applied"] * 3


@pytest.mark.parametrize("body", [
    {"mutations": {"0": {}}},
    {"mutations": "all of them"},
    {"mutations": None},
    {"mutation": []},
    {},
    [],
    "mutations",
    42,
])
def test_mutations_must_be_a_list_in_an_object(nothing_stored, body):
    result = assert_error(post_raw(nothing_stored, json.dumps(body)), 400, "invalid")
    assert "mutations" in result["fields"]


def test_an_empty_push_is_answered_with_no_results(world, warden):
    before = counts()
    assert warden.push([])["results"] == []
    assert counts() == before


# --- one bad mutation among good ones -----------------------------------------------------------

@pytest.mark.parametrize(("change", "field", "field_code"), [
    ({"op": "upsert"}, "op", "unknown_op"),
    ({"op": None}, "op", "unknown_op"),
    ({"type": "vehicle"}, "type", "unknown_type"),
    ({"type": 3}, "type", "unknown_type"),
    ({"id": "not-a-uuid"}, "id", "invalid_uuid"),
    ({"mutation_id": "not-a-uuid"}, "mutation_id", "invalid_uuid"),
    ({"data": ["qualifier", "nuisance"]}, "data", "wrong_type"),
    ({"client_time": "last tuesday"}, "client_time", "invalid_datetime"),
    ({"client_time": "2026-11-24T10:00:00"}, "client_time", "missing_offset"),
    ({"client_time": "0001-01-01T00:00:00+14:00"}, "client_time", "out_of_range"),
    ({"client_time": "9999-12-31T23:00:00-10:00"}, "client_time", "out_of_range"),
    ({"extra": 1}, "extra", "unknown_field"),
])
def test_a_bad_envelope_is_rejected_alone(world, warden, change, field, field_code):
    good_id, bad_id = uuid.uuid4(), uuid.uuid4()
    good = mutation("observation", "create", good_id, observation_data())
    bad = mutation("observation", "create", bad_id, observation_data())
    bad.update(change)
    results = warden.push([bad, good])["results"]
    assert results[1]["status"] == "applied", "one bad mutation never blocks the others"
    assert results[0]["status"] == "rejected" and results[0]["code"] == "invalid_mutation"
    assert field_code in [e["code"] for e in results[0]["errors"][field]]
    if field != "mutation_id":
        assert_rejected(warden, bad, results[0], "invalid_mutation", field, field_code)
    else:  # no usable id to file it under: it is kept by its payload
        from fieldsync.sync.models import QuarantinedMutation

        [kept] = QuarantinedMutation.objects.filter(payload=bad)
        assert kept.code == "invalid_mutation" and kept.errors == results[0]["errors"]
    assert not model_of("observation").objects.filter(pk=bad_id).exists()


@pytest.mark.parametrize("change", [{"op": "upsert"}, {"type": "vehicle"}, {"data": "x"}])
def test_a_resent_bad_envelope_is_a_duplicate(world, warden, change):
    bad = mutation("observation", "create", uuid.uuid4(), observation_data())
    bad.update(change)
    first = warden.push_one(bad)
    assert first["status"] == "rejected"
    before = counts()
    again = warden.push([bad, bad])["results"]
    assert [r["status"] for r in again] == ["duplicate", "duplicate"]
    assert again[0]["original"] == first
    assert counts() == before
    assert len(receipts(bad["mutation_id"])) == 1


@pytest.mark.parametrize("bad", [5, "create", None, ["observation", "create"]])
def test_a_mutation_that_is_not_an_object_is_rejected_alone(world, warden, bad):
    from fieldsync.sync.models import QuarantinedMutation

    good = mutation("observation", "create", uuid.uuid4(), observation_data())
    results = warden.push([bad, good])["results"]
    assert results[0]["status"] == "rejected"
    assert results[0]["errors"]["mutation"][0]["code"] == "wrong_type"
    assert results[1]["status"] == "applied"
    assert QuarantinedMutation.objects.filter(code="invalid_mutation", payload=bad).count() == 1


@pytest.mark.parametrize(("op", "base_version", "field_code"), [
    ("update", None, "required"),
    ("delete", None, "required"),
    ("update", 0, "wrong_type"),
    ("update", -1, "wrong_type"),
    ("update", "1", "wrong_type"),
    ("update", 1.5, "wrong_type"),
    ("update", True, "wrong_type"),
])
def test_a_bad_base_version_is_rejected(world, warden, op, base_version, field_code):
    record_id = uuid.uuid4()
    warden.push_one(mutation("observation", "create", record_id, observation_data(description="kept")))
    m = mutation("observation", op, record_id, {"description": "changed"} if op == "update" else None,
                 base_version=base_version)
    assert_rejected(warden, m, warden.push_one(m), "invalid_mutation", "base_version", field_code)
    stored = model_of("observation").objects.get(pk=record_id)
    assert (stored.description, stored.version, stored.deleted_at) == ("kept", 1, None)


@pytest.mark.parametrize(("location", "field_code"), [
    (point((181.0, 53.5)), "out_of_range"),
    (point((-181.0, 53.5)), "out_of_range"),
    (point((-2.5, 90.5)), "out_of_range"),
    (point((-2.5, -90.0001)), "out_of_range"),
    ({"type": "Point", "coordinates": ["NaN", 53.5]}, "invalid_geometry"),
    ({"type": "Point", "coordinates": [-2.5, "Infinity"]}, "invalid_geometry"),
    ({"type": "Point", "coordinates": [True, 53.5]}, "invalid_geometry"),
    ({"type": "Point"}, "invalid_geometry"),
    ({"type": "Point", "coordinates": [[-2.5, 53.5]]}, "invalid_geometry"),
    ({"type": "Point", "coordinates": [-2.5, 53.5, 10.0, 1.0]}, "invalid_geometry"),
    ("POINT(-2.5 53.5)", "invalid_geometry"),
    ({"type": "Feature", "geometry": point(IN_LEIGH)}, "invalid_geometry"),
])
def test_bad_coordinates_are_rejected_per_field(world, warden, location, field_code):
    record_id = uuid.uuid4()
    m = mutation("observation", "create", record_id, observation_data(location=location))
    assert_rejected(warden, m, warden.push_one(m), "validation_failed", "location", field_code)
    assert_not_stored("observation", record_id)


@pytest.mark.parametrize(("field", "value", "field_code"), [
    ("accuracy_m", "NaN", "wrong_type"),
    ("accuracy_m", "Infinity", "wrong_type"),
    ("accuracy_m", -1, "too_small"),
    ("accuracy_m", 1e9, "too_large"),
    ("description", "nul\x00byte", "invalid_character"),
    ("persons_involved", [{"name": "nul\x00byte"}], "invalid_character"),
    ("persons_involved", [{"nul\x00key": "x"}], "invalid_character"),
    ("description", "x" * 4001, "too_long"),
    ("persons_involved", [{"approx_age": "NaN"}, "not an object"], "wrong_type"),
    ("photos", ["not-a-hash"], "invalid_hash"),
    ("observed_at", now_iso(timedelta(days=365 * 900)), "future_time"),
    ("observed_at", now_iso(timedelta(minutes=30)), "future_time"),
    ("observed_at", "1999-12-31T23:59:59+00:00", "too_old"),
    ("observed_at", "2026-02-30T10:00:00+00:00", "invalid_datetime"),
    ("observed_at", 1764000000, "wrong_type"),
])
def test_bad_values_are_rejected_per_field(world, warden, field, value, field_code):
    record_id = uuid.uuid4()
    m = mutation("observation", "create", record_id, observation_data(**{field: value}))
    assert_rejected(warden, m, warden.push_one(m), "validation_failed", field, field_code)
    assert_not_stored("observation", record_id)


def test_nul_characters_anywhere_are_quarantined_not_a_500(world, warden):
    """jsonb cannot hold U+0000: the quarantine keeps the mutation all the same."""
    record_id = uuid.uuid4()
    data = observation_data(**{"bad\x00key": "x"})
    m = mutation("observation", "create", record_id, data)
    m["client_time"] = "2026-11-24T10:00:00\x00"
    result = warden.push_one(m)
    assert result["status"] == "rejected" and result["code"] == "invalid_mutation"
    [kept] = quarantined(m["mutation_id"])
    assert kept.payload["data"]["bad\ufffdkey"] == "x"
    assert warden.push_one(m)["status"] == "duplicate"
    assert_not_stored("observation", record_id)


def test_times_within_the_allowed_clock_skew_are_accepted(world, warden):
    record_id = uuid.uuid4()
    m = mutation("observation", "create", record_id, observation_data(observed_at=now_iso(timedelta(minutes=2))))
    assert warden.push_one(m)["status"] == "applied"


def test_a_reset_device_clock_is_kept_as_evidence(world, warden):
    record_id = uuid.uuid4()
    m = mutation("observation", "create", record_id, observation_data())
    m["client_time"] = "1970-01-01T00:00:00+00:00"
    assert warden.push_one(m)["status"] == "applied"
    assert model_of("observation").objects.get(pk=record_id).client_time.year == 1970
    edit = mutation("observation", "update", record_id, {"description": "later"}, base_version=1)
    assert warden.push_one(edit)["status"] == "applied"


def test_a_far_future_client_time_is_kept_as_evidence_only(world, warden):
    record_id = uuid.uuid4()
    m = mutation("observation", "create", record_id, observation_data())
    m["client_time"] = "2999-01-01T00:00:00+00:00"
    result = warden.push_one(m)
    assert result["status"] == "applied"
    stored = model_of("observation").objects.get(pk=record_id)
    assert stored.client_time.year == 2999
    assert stored.updated_at.year < 2999, "the server's clock orders records, not the device's"


# --- enrolment -------------------------------------------------------------------------------

def enrol(username: str, password: str = PASSWORD, **extra):
    body = {"username": username, "password": password, "label": "test", "platform": "test", **extra}
    return Client().post("/api/v1/devices/enrol", json.dumps(body), content_type="application/json")


def device_count() -> int:
    from fieldsync.sync.models import Device

    return Device.objects.count()


def test_enrol_with_a_wrong_password_is_401(world):
    before = device_count()
    assert_error(enrol("warden", "wrong-password"), 401, "invalid_credentials")
    assert_error(enrol("nobody"), 401, "invalid_credentials")
    assert device_count() == before


@pytest.mark.parametrize("username", ["analyst", "partner"])
def test_enrol_by_a_role_without_handhelds_is_403(world, username):
    before = device_count()
    assert_error(enrol(username), 403, "enrol_forbidden")
    assert device_count() == before


def test_enrol_with_missing_fields_is_400(world):
    response = Client().post("/api/v1/devices/enrol", json.dumps({"username": "warden"}),
                             content_type="application/json")
    body = assert_error(response, 400, "invalid")
    assert set(body["fields"]) == {"password", "label"}
    assert_error(Client().post("/api/v1/devices/enrol", "{", content_type="application/json"), 400,
                 "malformed_json")
    assert device_count() == 0


# --- bearer tokens and revocation -------------------------------------------------------------

def endpoints(handheld):
    """Every device endpoint, called with this handheld's token."""
    sha = hashlib.sha256(b"photo").hexdigest()
    c, auth = handheld.client, handheld.auth
    m = mutation("observation", "create", uuid.uuid4(), observation_data())
    return {
        "manifest": lambda: c.get("/api/v1/sync/manifest", **auth),
        "push": lambda: c.post(PUSH, json.dumps({"mutations": [m]}), content_type="application/json", **auth),
        "pull": lambda: c.get("/api/v1/sync/pull", **auth),
        "status": lambda: c.get("/api/v1/sync/status", **auth),
        "attachment put": lambda: c.put(f"/api/v1/attachments/{sha}", b"photo", content_type="image/jpeg", **auth),
        "attachment head": lambda: c.head(f"/api/v1/attachments/{sha}", **auth),
        "revoke": lambda: c.post(f"/api/v1/devices/{handheld.device_id}/revoke", **auth),
    }


def test_no_token_is_401(world, warden):
    before = counts()
    anonymous = Client()
    for path in ("/api/v1/sync/manifest", "/api/v1/sync/pull", "/api/v1/sync/status"):
        assert_error(anonymous.get(path), 401, "not_authenticated")
    m = mutation("observation", "create", uuid.uuid4(), observation_data())
    response = anonymous.post(PUSH, json.dumps({"mutations": [m]}), content_type="application/json")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert counts() == before


@pytest.mark.parametrize("header", ["Bearer fsd_not-a-real-token", "Bearer fsd_", "bearer fsd_x"])
def test_an_unknown_token_is_401(world, warden, header):
    before = counts()
    m = mutation("observation", "create", uuid.uuid4(), observation_data())
    response = Client().post(PUSH, json.dumps({"mutations": [m]}), content_type="application/json",
                             HTTP_AUTHORIZATION=header)
    assert_error(response, 401, "invalid_token")
    assert counts() == before


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Token fsd_x", "Basic !!!"])
def test_a_malformed_authorization_header_is_401(world, warden, header):
    before = counts()
    response = Client().get("/api/v1/sync/status", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401, response.content
    assert response.json()["code"] in ("not_authenticated", "invalid_token")
    assert counts() == before


def test_a_revoked_device_is_told_to_wipe_on_every_endpoint(world, warden):
    supervisor = world.enrol("supervisor")
    record_id = uuid.uuid4()
    warden.push_one(mutation("observation", "create", record_id, observation_data()))
    response = supervisor.client.post(f"/api/v1/devices/{warden.device_id}/revoke", **supervisor.auth)
    assert response.status_code == 200, response.content
    assert response.json()["device_id"] == warden.device_id
    revoked = device_row(warden)
    assert revoked.revoked_at is not None and revoked.revoked_by.username == "supervisor"
    before = counts()
    for name, call in endpoints(warden).items():
        response = call()
        assert response.status_code == 401, (name, response.content)
        if name != "attachment head":  # a HEAD answer has no body
            body = assert_error(response, 401, "device_revoked")
            assert body["wipe"] is True, name
    assert counts() == before, "a revoked device stores nothing"
    # The supervisor's own device is unaffected; revoking twice is harmless.
    assert supervisor.get("/api/v1/sync/status").status_code == 200
    again = supervisor.client.post(f"/api/v1/devices/{warden.device_id}/revoke", **supervisor.auth)
    assert again.status_code == 200
    assert device_row(warden).revoked_at == revoked.revoked_at


def test_a_disabled_account_is_401_user_inactive_on_push_and_pull(world, warden):
    """An account disabled after enrolment (a warden who left): the device's still valid
    token gets 401 `user_inactive` on push and pull, and the push stores nothing."""
    from warden_app.models import User

    record_id = uuid.uuid4()
    assert warden.push_one(mutation("observation", "create", record_id, observation_data()))["status"] == "applied"
    warden.pull_all()
    User.objects.filter(username="warden").update(is_active=False)
    before = counts()
    pushed_at = device_row(warden).last_push_at
    m = mutation("observation", "update", record_id, {"description": "after leaving"}, base_version=1)
    assert_error(post_raw(warden, json.dumps({"mutations": [m]})), 401, "user_inactive")
    create = mutation("observation", "create", uuid.uuid4(), observation_data())
    assert_error(post_raw(warden, json.dumps({"mutations": [create]})), 401, "user_inactive")
    pulled = device_row(warden).last_pull_at
    assert_error(warden.client.get("/api/v1/sync/pull", **warden.auth), 401, "user_inactive")
    assert_error(warden.client.get(f"/api/v1/sync/pull?cursor={warden.cursor}", **warden.auth), 401,
                 "user_inactive")
    assert counts() == before, "a disabled account's push stores nothing"
    assert receipts(m["mutation_id"]) == [] and receipts(create["mutation_id"]) == []
    row = device_row(warden)
    assert (row.last_push_at, row.last_pull_at) == (pushed_at, pulled), "nor is the device marked as synced"
    assert model_of("observation").objects.get(pk=record_id).description == "Group drinking by the bus station"
    # Enabled again, the same token works: disabling is not revocation.
    User.objects.filter(username="warden").update(is_active=True)
    assert warden.push_one(m)["status"] == "applied"


def test_a_non_finite_number_from_a_caller_of_the_service_is_rejected_not_finite(world, warden):
    """JSON text cannot carry NaN or infinity (the parser refuses them: malformed_json,
    above), but the push service takes Python values: a caller handing it a non-finite
    float gets the field error `not_finite`, and nothing is stored."""
    from fieldsync.sync.models import Device
    from fieldsync.sync.push import push_apply
    from warden_app.models import User

    user, device = User.objects.get(username="warden"), Device.objects.get(pk=warden.device_id)
    cases = [("accuracy_m", float("inf")), ("accuracy_m", float("nan")), ("accuracy_m", float("-inf")),
             ("persons_involved", [{"approx_age": float("nan")}]),
             ("persons_involved", [{"approx_age": float("inf")}])]
    for name, value in cases:
        record_id = uuid.uuid4()
        m = mutation("observation", "create", record_id, observation_data(**{name: value}))
        before = counts()
        [result] = push_apply(user=user, device=device, mutations=[m])
        assert result["status"] == "rejected" and result["code"] == "validation_failed", (name, value, result)
        assert [e["code"] for e in result["errors"][name]] == ["not_finite"], (name, value, result)
        assert_not_stored("observation", record_id)
        after = counts()
        # Only the receipt and the quarantined copy are written (a rejection's answer).
        assert {t: after[t] - before[t] for t in after if after[t] != before[t]} == {
            "sync_receipt": 1, "sync_quarantinedmutation": 1}, (name, value)


def test_a_re_enrolled_handheld_works_after_the_old_one_is_revoked(world, warden):
    supervisor = world.enrol("supervisor")
    supervisor.client.post(f"/api/v1/devices/{warden.device_id}/revoke", **supervisor.auth)
    fresh = world.enrol("warden")
    assert fresh.push_one(mutation("observation", "create", uuid.uuid4(), observation_data()))["status"] == "applied"


def test_a_warden_may_not_revoke_another_wardens_device(world, warden):
    other = world.enrol("warden2")
    response = other.client.post(f"/api/v1/devices/{warden.device_id}/revoke", **other.auth)
    assert response.status_code in (403, 404), response.content
    assert response.json()["code"] in ("permission_denied", "not_found")
    own = other.client.post(f"/api/v1/devices/{other.device_id}/revoke", **other.auth)
    assert_error(own, 403, "permission_denied")
    assert device_row(warden).revoked_at is None and device_row(other).revoked_at is None
    assert warden.get("/api/v1/sync/status").status_code == 200


def test_a_supervisor_may_not_revoke_devices_outside_their_teams(world):
    wigan = world.enrol("warden_wigan")
    supervisor = world.enrol("supervisor")
    response = supervisor.client.post(f"/api/v1/devices/{wigan.device_id}/revoke", **supervisor.auth)
    assert response.status_code in (403, 404), response.content
    assert device_row(wigan).revoked_at is None


def test_an_admin_may_revoke_any_device(world, warden):
    from warden_app.models import User
    from warden_app.roles import Role
    from warden_app.services.roles import role_groups_ensure

    admin = User.objects.create(username="admin", password=password_hash())
    admin.groups.add(role_groups_ensure()[Role.ADMIN])
    credentials = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    response = Client().post(f"/api/v1/devices/{warden.device_id}/revoke", HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert response.status_code == 200, response.content
    assert device_row(warden).revoked_by == admin
    body = assert_error(warden.get("/api/v1/sync/manifest"), 401, "device_revoked")
    assert body["wipe"] is True


def test_revoking_an_unknown_device_is_404(world):
    supervisor = world.enrol("supervisor")
    response = supervisor.client.post(f"/api/v1/devices/{uuid.uuid4()}/revoke", **supervisor.auth)
    assert_error(response, 404, "not_found")


# --- throttling ------------------------------------------------------------------------------

def test_a_device_over_its_rate_is_429_with_retry_after(world, warden):
    other = world.enrol("warden2")
    with override_settings(SYNC_DEVICE_RATE="3/min"):
        for _ in range(3):
            assert warden.get("/api/v1/sync/status").status_code == 200
        m = mutation("observation", "create", uuid.uuid4(), observation_data())
        before = counts()
        response = post_raw(warden, json.dumps({"mutations": [m]}))
        assert_error(response, 429, "throttled")
        assert 0 < int(response["Retry-After"]) <= 60
        assert counts() == before, "a throttled push stores nothing"
        assert_error(warden.get("/api/v1/sync/manifest"), 429, "throttled")
        # The limit is per device: another handheld is not held back.
        assert other.get("/api/v1/sync/status").status_code == 200


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own: it may be paused without holding up anyone else."""
    import subprocess

    import redis

    from tests.deploy.stack import free_port, redis_server_argv, wait_until

    port = free_port()
    server = subprocess.Popen(redis_server_argv(port, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_timeout=5)
    try:
        wait_until(client.ping, f"redis-server on port {port}", 10)
        yield port, client
    finally:
        client.close()
        server.terminate()
        server.wait(10)


def test_requests_at_the_same_moment_never_pass_more_than_the_rate(world, warden, private_redis):
    """The window is checked and taken in one step in Redis: of 24 requests arriving at
    once, exactly the rate passes (read-then-write counters let them all through). At once,
    proven: Redis is paused for writes until all 24 scripts have reached it and wait there
    (INFO `blocked_clients`), so every request is in flight before any is answered."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from fieldsync.sync import throttling
    from fieldsync.sync.models import Device
    from fieldsync.sync.throttling import DeviceRateThrottle

    port, admin = private_redis
    request = SimpleNamespace(auth=Device.objects.get(pk=warden.device_id))
    start = threading.Barrier(24)
    answered = threading.Event()
    caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": f"redis://127.0.0.1:{port}/0", "KEY_PREFIX": "proofs",
                          # Longer than the pause below: a timeout would fail open and pass all 24.
                          "OPTIONS": {"socket_connect_timeout": 5, "socket_timeout": 5}}}

    def one(_):
        throttle = DeviceRateThrottle()
        start.wait()
        try:
            return throttle.allow_request(request, None)
        finally:
            answered.set()

    with override_settings(SYNC_DEVICE_RATE="5/min", CACHES=caches):
        admin.script_load(throttling._WINDOW_SCRIPT)  # so each request is one EVALSHA
        throttling._script = None
        admin.client_pause(20_000, all=False)  # writes (scripts among them) wait
        try:
            with ThreadPoolExecutor(24) as pool:
                answers = pool.map(one, range(24))
                deadline = time.monotonic() + 10
                while int(admin.info("clients")["blocked_clients"]) < 24:
                    assert time.monotonic() < deadline, admin.info("clients")
                    time.sleep(0.01)
                in_flight_together = not answered.is_set()
                admin.client_unpause()
                answers = list(answers)
        finally:
            admin.client_unpause()
        assert in_flight_together, "a request was answered before all 24 had reached Redis"
        assert answers.count(True) == 5
        late = DeviceRateThrottle()
        assert not late.allow_request(request, None) and 59 < late.wait() <= 60
    with override_settings(SYNC_DEVICE_RATE="0/min"):  # nothing allowed, not "Redis failed"
        assert not DeviceRateThrottle().allow_request(request, None)


def test_the_device_rate_is_read_at_request_time(world, warden):
    """Requests made under the default rate count once a lower rate is configured."""
    for _ in range(3):
        assert warden.get("/api/v1/sync/status").status_code == 200
    with override_settings(SYNC_DEVICE_RATE="3/min"):
        assert_error(warden.get("/api/v1/sync/status"), 429, "throttled")
    with override_settings(SYNC_DEVICE_RATE="10/min"):
        assert warden.get("/api/v1/sync/status").status_code == 200


def test_an_offset_postgresql_cannot_hold_is_kept_as_the_same_instant_in_utc(world, warden):
    """ISO 8601 allows offsets to ±23:59, PostgreSQL only to ±15:59: a handheld's +18:00
    time is stored as the instant it names, not refused by the database."""
    from datetime import UTC, datetime

    from warden_app.models import Observation

    record_id = uuid.uuid4()
    data = observation_data(observed_at="2026-01-02T03:00:00+18:00")
    result = warden.push_one(mutation("observation", "create", record_id, data))
    assert result["status"] == "applied", result
    assert Observation.objects.get(pk=record_id).observed_at == datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
