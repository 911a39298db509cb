"""The demo partnership with records made through the sync protocol, for the analysis tests.

Records are pushed by enrolled handhelds (so the database places them in areas, as in
real use). Streams read on a second connection, so most tests here use committed data
(`transactional_db`).
"""
from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.sync.conftest import (
    IN_LEIGH,
    IN_WIGAN,
    OUTSIDE,
    Handheld,
    audit_data,
    item_data,
    mutation,
    observation_data,
)

PASSWORD = "fieldsync-demo"
PERSONAL = ("description", "persons_involved", "photos")
# A second point in Leigh, 200 m east of the first.
IN_LEIGH_EAST = (IN_LEIGH[0] + 0.003, IN_LEIGH[1])


@dataclass
class AnalysisWorld:
    demo: object
    users: dict
    # label -> record id (str)
    records: dict = field(default_factory=dict)
    handhelds: dict = field(default_factory=dict)

    def handheld(self, username: str) -> Handheld:
        from fieldsync.sync.services.devices import device_enrol

        if username not in self.handhelds:
            enrolment = device_enrol(username=username, password=PASSWORD, label=f"{username}-test",
                                     platform="test")
            self.handhelds[username] = Handheld(token=enrolment.token, device_id=str(enrolment.device.pk))
        return self.handhelds[username]

    def push(self, username: str, type_: str, data: dict, label: str | None = None) -> str:
        record_id = str(uuid.uuid4())
        result = self.handheld(username).push_one(mutation(type_, "create", record_id, data))
        assert result["status"] == "applied", result
        if label:
            self.records[label] = record_id
        return record_id

    def client(self, username: str | None) -> Client:
        return basic_client(username)


def build_analysis_world() -> AnalysisWorld:
    """Observations by a council warden and a police PCSO in Leigh, a council warden in
    Wigan and one outside every area; one rejected; a street audit with two items."""
    from warden_app.services.demo import demo_seed
    from warden_app.services.review import review_decide

    demo = demo_seed(password=PASSWORD)
    world = AnalysisWorld(demo=demo, users=dict(demo.users))
    hour = timedelta(hours=1)
    world.push("warden_leigh", "observation", observation_data(
        IN_LEIGH, qualifier="personal", incident_type="rowdy_inconsiderate",
        observed_at=(timezone.now() - 3 * hour).isoformat(), description="Two youths shouting at a woman",
        persons_involved=[{"description": "tall, red jacket", "approx_age": 16}]), "council_leigh")
    world.push("warden_leigh", "observation", observation_data(
        IN_LEIGH_EAST, qualifier="nuisance", incident_type="street_drinking",
        observed_at=(timezone.now() - 2 * hour).isoformat(), description="Group drinking by the library"),
        "council_leigh_east")
    world.push("pcso_leigh", "observation", observation_data(
        IN_LEIGH, qualifier="nuisance", incident_type="noise", description="Music from a parked car",
        persons_involved=[{"description": "driver, 20s"}]), "police_leigh")
    world.push("warden_wigan", "observation", observation_data(
        IN_WIGAN, qualifier="environmental", incident_type="littering_drugs_paraphernalia",
        description="Needles behind the bus shelter"), "council_wigan")
    world.push("warden_leigh", "observation", observation_data(OUTSIDE, description="Off the patch"),
               "council_outside")
    world.push("warden_leigh", "observation", observation_data(
        IN_LEIGH, incident_type="other", description="Recorded by mistake"), "rejected")
    review_decide(reviewer=world.users["supervisor_leigh"], record_type="observation",
                  record_id=uuid.UUID(world.records["rejected"]), decision="rejected", note="Duplicate")
    audit = world.push("warden_leigh", "street_audit", audit_data(IN_LEIGH, title="Market St walk"), "audit")
    world.push("warden_leigh", "audit_item", item_data(audit, IN_LEIGH, issue_type="litter", grade="C"), "litter")
    world.push("warden_leigh", "audit_item", item_data(audit, IN_LEIGH_EAST, issue_type="fly_tipping", grade=None),
               "fly_tipping")
    return world


@pytest.fixture
def world(db, media) -> AnalysisWorld:
    """For reads that stay on the request's connection (pages, details, OGC pages)."""
    return build_analysis_world()


@pytest.fixture
def tworld(transactional_db, media) -> AnalysisWorld:
    """Committed: for streams (a second connection reads) and live servers."""
    return build_analysis_world()


def basic(username: str) -> dict:
    raw = base64.b64encode(f"{username}:{PASSWORD}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {raw}"}


def basic_client(username: str | None) -> Client:
    """A client sending HTTP Basic for `username` (anonymous for None), as API clients do."""
    client = Client()
    if username:
        client.defaults.update(basic(username))
    return client


def log_rows(**filters):
    from warden_app.models import AccessLogEntry

    return list(AccessLogEntry.objects.filter(**filters).order_by("id"))


def reads_logged(since_id: int = 0):
    """Consultation and disclosure rows written after `since_id`."""
    from warden_app.models import AccessLogEntry

    return list(AccessLogEntry.objects.filter(id__gt=since_id, action__in=["consultation", "disclosure"])
                .order_by("id"))


def last_log_id() -> int:
    from warden_app.models import AccessLogEntry

    return AccessLogEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
