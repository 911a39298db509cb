"""Escalation to partner systems against a real HTTP server on loopback: delivery with
retries and backoff, failure after the last attempt, the documented JSON form, personal
fields only where the sharing protocol opens them, and the disclosure logged with the
escalation. Delivery runs through Celery's `Task.apply()`: the task executes in this
process, its retries too (countdowns are not waited for), as CELERY_TASK_ALWAYS_EAGER
would run it."""
from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fieldsync.errors import ApiError
from warden_app.accountability.services.escalation import escalation_attempt, escalation_backoff, record_escalate
from warden_app.accountability.tasks import escalation_deliver_task
from warden_app.models import AccessLogEntry, Escalation, Observation, PartnerEndpoint

from .conftest import JANE


class Partner:
    """A partner system: answers each POST with the next scripted status (the last one
    repeats) and keeps what it received."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.received: list[dict] = []
        partner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                partner.received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                status = partner.statuses.pop(0) if len(partner.statuses) > 1 else partner.statuses[0]
                answer = json.dumps({"reference": f"INC-{len(partner.received)}"} if status < 300 else
                                    {"error": "down"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/incidents"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def partner_factory(settings):
    settings.ESCALATION_ALLOW_HTTP = True  # loopback test rig; production is https only
    settings.ESCALATION_MAX_ATTEMPTS = 3
    settings.FIELDSYNC_BASE_URL = "https://fieldsync.example"
    started: list[Partner] = []

    def start(*statuses: int) -> Partner:
        started.append(Partner(list(statuses)))
        return started[-1]

    yield start
    for partner in started:
        partner.close()


def endpoint_for(world, partner: Partner, organisation: str = "Greater Manchester Police",
                 kind: str = "police_incident") -> PartnerEndpoint:
    return PartnerEndpoint.objects.create(
        name=f"{organisation} {kind}", organisation=world.demo.organisations[organisation], url=partner.url,
        kind=kind, auth_header_name="Authorization", auth_header_secret="Bearer partner-test-token",
    )


def escalate(world, record_id, endpoint, username="supervisor_leigh", purpose="ASB case 44") -> Escalation:
    return record_escalate(user=world.users[username], record_type="observation", record_id=uuid.UUID(record_id),
                           endpoint=endpoint, purpose=purpose)


def deliver(escalation: Escalation) -> Escalation:
    escalation_deliver_task.apply(args=[str(escalation.pk)])
    escalation.refresh_from_db()
    return escalation


def test_a_failing_partner_gets_it_on_a_retry(world, partner_factory, django_capture_on_commit_callbacks):
    partner = partner_factory(500, 200)
    record = world.observe(persons_involved=[JANE])
    with django_capture_on_commit_callbacks() as queued:
        escalation = escalate(world, record, endpoint_for(world, partner))
    assert len(queued) == 1  # the delivery task is queued once the request commits
    assert escalation.state == "pending" and escalation.attempts == 0

    escalation = deliver(escalation)

    assert escalation.state == "delivered" and escalation.attempts == 2
    assert escalation.delivered_at and escalation.last_status == 200 and escalation.last_error == ""
    assert escalation.partner_reference == "INC-2"
    first, second = partner.received
    assert first["body"] == second["body"]  # the same form, sent again
    assert {r["headers"]["Idempotency-Key"] for r in partner.received} == {str(escalation.pk)}
    assert first["headers"]["Authorization"] == "Bearer partner-test-token"


def test_a_partner_that_never_answers_well_fails_it_after_the_last_attempt(world, partner_factory):
    partner = partner_factory(503)
    escalation = deliver(escalate(world, world.observe(), endpoint_for(world, partner)))
    assert escalation.state == "failed" and escalation.attempts == 3 and len(partner.received) == 3
    assert escalation.last_status == 503 and "HTTP 503" in escalation.last_error
    assert escalation.delivered_at is None and escalation.next_attempt_at is None
    assert deliver(escalation).attempts == 3  # a redelivered task sends nothing more


def test_a_refusal_fails_at_once(world, partner_factory):
    partner = partner_factory(422)
    escalation = deliver(escalate(world, world.observe(), endpoint_for(world, partner)))
    assert (escalation.state, escalation.attempts, len(partner.received)) == ("failed", 1, 1)


def test_nothing_answering_is_retried_with_exponential_backoff(world, partner_factory, settings):
    partner = partner_factory(200)
    endpoint = endpoint_for(world, partner)
    partner.close()  # nobody listens on that port now
    settings.ESCALATION_BACKOFF_BASE_S, settings.ESCALATION_BACKOFF_MAX_S = 30, 100
    escalation = escalate(world, world.observe(), endpoint)
    first = escalation_attempt(escalation_id=escalation.pk)
    escalation.refresh_from_db()
    assert first.state == "pending" and first.retry_in == 30 and "no answer" in escalation.last_error
    assert (escalation.next_attempt_at - escalation.last_attempt_at).total_seconds() == 30
    assert [escalation_backoff(n) for n in range(1, 6)] == [30, 60, 100, 100, 100]  # doubling, capped


def test_the_form_carries_what_docs_escalation_md_says(world, partner_factory):
    partner = partner_factory(200)
    record = world.observe(persons_involved=[JANE], description="Jane Doe shouting")
    # The council's own case system: the protocol's default clause opens the council's
    # records' personal details to council staff, so to the council's system too.
    council = endpoint_for(world, partner, "Wigan Council", "council_case")
    deliver(escalate(world, record, council))
    body = partner.received[0]["body"]
    observation = Observation.objects.get(pk=record)
    assert body["schema"] == "fieldsync.escalation/1" and body["kind"] == "council_case"
    assert body["record"]["id"] == record and body["record"]["type"] == "observation"
    assert body["record"]["categories"] == {"qualifier": "nuisance", "incident_type": "street_drinking"}
    assert body["record"]["time"] == observation.observed_at.isoformat()
    location = body["record"]["location"]
    assert location["wgs84"] == {"longitude": -2.517, "latitude": 53.4975}
    # Leigh on the British National Grid (metres east and north of the grid's origin).
    assert abs(location["bng"]["easting"] - 365_800) < 10 and abs(location["bng"]["northing"] - 400_210) < 10
    assert body["record"]["area"]["code"] == "LEIGH-TC"
    assert body["reporter"]["organisation"]["name"] == "Wigan Council"
    assert body["escalated_by"] == {"organisation": {"name": "Wigan Council", "slug": "wigan-council",
                                                     "kind": "council"}, "purpose": "ASB case 44"}
    assert body["fieldsync_url"] == f"https://fieldsync.example/review/records/observation/{record}/"
    assert body["personal_data_included"] is True
    assert body["record"]["persons"] == [JANE] and body["record"]["description"] == "Jane Doe shouting"


def test_personal_details_go_only_where_the_protocol_opens_them(world, partner_factory, settings):
    partner = partner_factory(200)
    record = world.observe(persons_involved=[JANE], description="Jane Doe shouting")
    police = endpoint_for(world, partner)  # no clause opens council records to the police
    deliver(escalate(world, record, police))
    body = partner.received[-1]["body"]
    assert body["personal_data_included"] is False
    assert "persons" not in body["record"] and "description" not in body["record"]
    assert "Jane" not in json.dumps(body)

    settings.ACCESS_LOG_PURPOSE_REQUIRED = False
    council = endpoint_for(world, partner, "Wigan Council", "council_case")
    escalation = deliver(escalate(world, record, council, purpose=""))  # no purpose, no personal details
    assert escalation.personal_fields == [] and "persons" not in partner.received[-1]["body"]["record"]


def test_the_disclosure_is_logged_with_the_escalation(world, partner_factory):
    partner = partner_factory(200)
    record = world.observe(persons_involved=[JANE])
    escalation = escalate(world, record, endpoint_for(world, partner, "Wigan Council", "council_case"),
                          username="analyst", purpose="Case 7: repeat victim")
    entry = escalation.access_log_entry
    assert entry == AccessLogEntry.objects.get(action="disclosure", details__escalation=str(escalation.pk))
    assert entry.actor == world.users["analyst"] and [str(i) for i in entry.record_ids] == [record]
    assert entry.recipient.startswith("Wigan Council") and entry.purpose == "Case 7: repeat victim"
    assert entry.details["personal_fields"] == ["description", "persons_involved"]
    assert "Jane" not in json.dumps(entry.details)


def test_who_may_escalate_what(world, partner_factory, settings):
    partner = partner_factory(200)
    endpoint = endpoint_for(world, partner)
    in_leigh, in_wigan = world.observe(), world.observe("warden_wigan", at=(-2.6325, 53.545))
    for username, record in (("warden_leigh", in_leigh), ("partner_fire", in_leigh), ("dpo", in_leigh),
                             ("supervisor_leigh", in_wigan)):
        with pytest.raises(ApiError) as refused:
            escalate(world, record, endpoint, username=username)
        assert refused.value.status_code == 404, username
    assert escalate(world, in_wigan, endpoint, username="analyst").state == "pending"
    with pytest.raises(ApiError, match="purpose"):
        escalate(world, in_leigh, endpoint, purpose="")
    Observation.objects.filter(pk=in_leigh).update(processing_restricted=True)
    with pytest.raises(ApiError) as restricted:
        escalate(world, in_leigh, endpoint)
    assert restricted.value.status_code == 409
    endpoint.active = False
    endpoint.save()
    with pytest.raises(ApiError, match="endpoint"):
        escalate(world, in_wigan, endpoint, username="analyst")
    assert Escalation.objects.count() == 1


def test_restricted_meanwhile_or_plain_http_is_not_sent(world, partner_factory, settings):
    partner = partner_factory(200)
    record = world.observe()
    escalation = escalate(world, record, endpoint_for(world, partner))
    Observation.objects.filter(pk=record).update(processing_restricted=True)
    escalation = deliver(escalation)
    assert escalation.state == "failed" and "restricted" in escalation.last_error and not partner.received

    Observation.objects.filter(pk=record).update(processing_restricted=False)
    settings.ESCALATION_ALLOW_HTTP = False
    escalation = deliver(escalate(world, record, PartnerEndpoint.objects.get()))
    assert escalation.state == "failed" and "https" in escalation.last_error and not partner.received


def test_the_api_requests_and_shows_an_escalation(world, partner_factory, django_capture_on_commit_callbacks):
    partner = partner_factory(200)
    endpoint = endpoint_for(world, partner)
    record = world.observe()
    client = world.client("supervisor_leigh")
    listed = client.get("/api/v1/escalations/endpoints").json()["results"]
    assert listed == [{"id": endpoint.pk, "name": endpoint.name, "kind": "police_incident",
                       "organisation": "Greater Manchester Police"}]
    assert "partner-test-token" not in json.dumps(listed)
    with django_capture_on_commit_callbacks():
        response = client.post("/api/v1/escalations", {"record_type": "observation", "record_id": record,
                                                        "endpoint": endpoint.pk, "purpose": "ASB case 44"},
                               content_type="application/json")
    assert response.status_code == 202, response.content
    url = f"/api/v1/escalations/{response.json()['id']}"
    assert client.get(url).json()["state"] == "pending"
    deliver(Escalation.objects.get())
    shown = client.get(url).json()
    assert shown["state"] == "delivered" and shown["attempts"] == 1 and shown["partner_reference"] == "INC-1"
    assert world.client("dpo").get(url).status_code == 200
    assert world.client("warden_wigan").get(url).status_code == 404
    bad = client.post("/api/v1/escalations", {"record_type": "street_audit", "record_id": record,
                                              "endpoint": endpoint.pk, "purpose": "x"},
                      content_type="application/json")
    assert bad.status_code == 400
