"""A hostile-input world: the demo partnership with records in two areas and outside both,
conflicts, quarantined mutations, photos, devices (one revoked), an export and an escalation,
plus one signed-in principal per role holding the credentials an attacker in that role has.

Everything goes through real HTTP (Django's test client), real PostgreSQL/PostGIS and Redis.
Redis state (throttles, the login guard) lives under a key prefix of this test's own, in a
database index other suites do not flush, so their `cache.clear()` cannot reset a count
half-way through a test here and counts made here cannot lock anyone out elsewhere.
"""
from __future__ import annotations

import base64
import hashlib
import io
import itertools
import uuid
from dataclasses import dataclass, field
from http.cookies import SimpleCookie

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from PIL import Image

from tests.analysis.conftest import PASSWORD, build_analysis_world
from tests.sync.conftest import IN_LEIGH, IN_WIGAN, Handheld, mutation, observation_data

_addresses = itertools.count(10)


def fresh_address() -> str:
    """A client address of its own (from TEST-NET-2): throttles and the login guard count per
    address, and each principal or scenario must start from nothing."""
    return f"198.51.100.{next(_addresses) % 250 + 1}"


@pytest.fixture
def own_cache(settings):
    """The default cache moved to its own key prefix and Redis database for this test."""
    default = dict(settings.CACHES["default"])
    default["LOCATION"] = default["LOCATION"].rsplit("/", 1)[0] + "/9"
    prefix = f"fieldsync-sec-{uuid.uuid4().hex[:12]}"
    default["KEY_PREFIX"] = prefix
    settings.CACHES = {**settings.CACHES, "default": default}
    yield prefix
    from django.core.cache import cache

    try:  # counts expire on their own; tidy anyway
        client = cache._cache.get_client(None, write=True)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
    except Exception:
        pass


def png(colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(out, format="PNG")
    return out.getvalue()


@dataclass
class Principal:
    """One caller: who, from where, and the credentials they hold."""

    name: str
    username: str | None = None
    address: str = field(default_factory=fresh_address)
    cookies: SimpleCookie = field(default_factory=SimpleCookie)
    device_token: str | None = None

    @property
    def basic(self) -> str | None:
        if not self.username:
            return None
        return "Basic " + base64.b64encode(f"{self.username}:{PASSWORD}".encode()).decode()

    def client(self, *, session: bool = True, authorization: str | None = None, csrf: bool = False) -> Client:
        """A fresh client (so a logout or a cookie set by one request never leaks into the
        next) carrying this principal's session cookie and an Authorization header."""
        client = Client(enforce_csrf_checks=csrf, REMOTE_ADDR=self.address)
        if session:
            for key, morsel in self.cookies.items():
                client.cookies[key] = morsel.value
        if authorization:
            client.defaults["HTTP_AUTHORIZATION"] = authorization
        return client


@dataclass
class SecurityWorld:
    analysis: object
    users: dict
    records: dict  # label -> record id (str)
    ids: dict  # other objects by label: conflicts, quarantine items, devices, export, escalation…
    principals: dict  # name -> Principal

    def handheld(self, username: str) -> Handheld:
        return self.analysis.handheld(username)


def _sign_in(principal: Principal) -> None:
    """A real sign-in through the desk's login form; the session cookie it sets is kept."""
    client = Client(REMOTE_ADDR=principal.address)
    response = client.post("/review/login/", {"username": principal.username, "password": PASSWORD})
    assert response.status_code == 302, (principal.name, response.status_code)
    principal.cookies = client.cookies


def _upload(handheld: Handheld, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    response = handheld.client.put(f"/api/v1/attachments/{sha}", data=data, content_type="image/png",
                                   **handheld.auth)
    assert response.status_code == 201, response.content
    return sha


def _conflict(world, username: str, at) -> str:
    """Two handhelds of one author change one field from the same base version."""
    from fieldsync.sync.services.devices import device_enrol

    first = world.handheld(username)
    record_id = str(uuid.uuid4())
    assert first.push_one(mutation("observation", "create", record_id, observation_data(at=at)))["status"] == "applied"
    enrolment = device_enrol(username=username, password=PASSWORD, label=f"{username}-second", platform="test")
    second = Handheld(token=enrolment.token, device_id=str(enrolment.device.pk))
    assert first.push_one(mutation("observation", "update", record_id, {"description": "first"},
                                   base_version=1))["status"] == "applied"
    result = second.push_one(mutation("observation", "update", record_id, {"description": "second"}, base_version=1))
    assert result["status"] == "conflict", result
    return str(result["conflict_id"])


def _quarantined(world, username: str) -> int:
    from fieldsync.sync.models import QuarantinedMutation

    bad = mutation("observation", "create", uuid.uuid4(), observation_data(incident_type="joyriding"))
    assert world.handheld(username).push_one(bad)["status"] == "rejected"
    return QuarantinedMutation.objects.get(mutation_id=bad["mutation_id"]).pk


def build_security_world() -> SecurityWorld:
    from fieldsync.sync.models import Device
    from fieldsync.sync.services.devices import device_enrol, device_revoke
    from warden_app.accountability.services.escalation import record_escalate
    from warden_app.models import AccessLogEntry, Export, PartnerEndpoint, RetentionPeriod
    from warden_app.services.api_tokens import api_token_create

    analysis = build_analysis_world()
    users = analysis.users
    records = dict(analysis.records)
    ids: dict = {}

    # Photos named by a Leigh and a Wigan observation (the desk's photo pages, attachments).
    leigh, wigan = analysis.handheld("warden_leigh"), analysis.handheld("warden_wigan")
    ids["photo_leigh"] = _upload(leigh, png((200, 30, 30)))
    ids["photo_wigan"] = _upload(wigan, png((30, 30, 200)))
    for label, username, at in (("photo_leigh", "warden_leigh", IN_LEIGH), ("photo_wigan", "warden_wigan", IN_WIGAN)):
        records[label] = analysis.push(username, "observation", observation_data(at=at, photos=[ids[label]]))

    # The supervisor's own record (nobody reviews their own work).
    records["own_supervisor"] = analysis.push("supervisor_leigh", "observation", observation_data())

    # Conflicts and quarantined mutations in the supervisor's team and in the other team.
    ids["conflict_leigh"] = _conflict(analysis, "warden_leigh", IN_LEIGH)
    ids["conflict_wigan"] = _conflict(analysis, "warden_wigan", IN_WIGAN)
    ids["quarantine_leigh"] = _quarantined(analysis, "warden_leigh")
    ids["quarantine_wigan"] = _quarantined(analysis, "warden_wigan")

    # Devices: each handheld user's first device, and a lost Leigh handheld that was revoked.
    for username in ("warden_leigh", "pcso_leigh", "warden_wigan", "supervisor_leigh"):
        ids[f"device_{username}"] = analysis.handheld(username).device_id
    lost = device_enrol(username="warden_leigh", password=PASSWORD, label="lost", platform="test")
    device_revoke(device=lost.device, by=users["supervisor_leigh"])
    ids["device_revoked"] = str(lost.device.pk)
    assert Device.objects.get(pk=lost.device.pk).revoked_at is not None

    # The analyst's finished export, its file in storage (built by a worker in real use).
    name = f"exports/security-{uuid.uuid4().hex}.geojson"
    default_storage.save(name, ContentFile(b'{"type":"FeatureCollection","features":[]}'))
    ids["export_analyst"] = str(Export.objects.create(
        owner=users["analyst"], record_type="observation", format="geojson", query={}, status="ready",
        file_name=name, row_count=0, size_bytes=40).pk)

    # An escalation the Leigh supervisor made of a Leigh record to the police's system.
    endpoint = PartnerEndpoint.objects.create(
        name="GMP incidents", organisation=analysis.demo.organisations["Greater Manchester Police"],
        url="https://partner.invalid/incidents", kind="police_incident", auth_header_secret="Bearer s3cret")
    ids["endpoint"] = endpoint.pk
    ids["escalation"] = str(record_escalate(
        user=users["supervisor_leigh"], record_type="observation", record_id=uuid.UUID(records["council_leigh"]),
        endpoint=endpoint.pk, purpose="ASB case 1").pk)
    ids["retention"] = RetentionPeriod.objects.create(record_type="observation", personal_days=365).pk
    from datetime import timedelta

    from django.utils import timezone

    from warden_app.services.purpose_requests import purpose_request_make

    ids["purpose_request"] = purpose_request_make(
        user=users["analyst"], record_type="observation", fields=["description"], purpose="repeat victims",
        valid_from=None, valid_until=timezone.now() + timedelta(days=30)).pk
    # A grant that has ended (the admin's pages show it; it opens nothing to the analyst now).
    from warden_app.models import PurposeGrant

    ids["purpose_grant"] = PurposeGrant.objects.create(
        user=users["analyst"], granted_by=users["admin"], record_type="observation", fields=["description"],
        purpose="last year's study", valid_from=timezone.now() - timedelta(days=60),
        valid_until=timezone.now() - timedelta(days=30)).pk
    ids["access_log_entry"] = AccessLogEntry.objects.order_by("id").values_list("id", flat=True).first()
    ids["api_token_analyst"] = api_token_create(user=users["analyst"], name="qgis")[1]

    principals = {"anonymous": Principal("anonymous")}
    for name, username in (("warden", "warden_leigh"), ("pcso", "pcso_leigh"), ("foreign_warden", "warden_wigan"),
                           ("supervisor", "supervisor_leigh"), ("analyst", "analyst"), ("partner", "partner_fire"),
                           ("dpo", "dpo"), ("admin", "admin")):
        principal = Principal(name, username)
        _sign_in(principal)
        if username in ("warden_leigh", "pcso_leigh", "warden_wigan", "supervisor_leigh"):
            principal.device_token = analysis.handheld(username).token
        principals[name] = principal
    principals["revoked"] = Principal("revoked", device_token=lost.token)
    principals["analyst_token"] = Principal("analyst_token")
    return SecurityWorld(analysis=analysis, users=users, records=records, ids=ids, principals=principals)


@pytest.fixture
def sec_world(db, media, own_cache, settings, monkeypatch) -> SecurityWorld:
    from warden_app.tasks import export_build_task

    settings.SYNC_ENROL_RATE = "1000/min"  # the world enrols more handhelds than a person would
    # An export asked for in a test is recorded, not handed to a real worker on the shared broker.
    monkeypatch.setattr(export_build_task, "apply_async", lambda *args, **kwargs: None)
    return build_security_world()

