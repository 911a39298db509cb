"""Data subjects' rights, answered by the DPO: find every record naming a person (logged
as a consultation, with a purpose), rectify, restrict and erase, from the record and
every copy the system keeps, each logged without the personal values."""
from __future__ import annotations

import io
import json
import uuid

import orjson
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from fieldsync.sync.models import Attachment, Conflict, QuarantinedMutation, Receipt, RecordVersion
from fieldsync.sync.tasks import attachment_thumbnail
from tests.sync.conftest import mutation
from warden_app.models import AccessLogEntry, Export, Observation
from warden_app.services.access_log import access_log_records
from warden_app.services.review import review_decide

from .conftest import JANE

SUBJECTS = "/api/v1/dpo/subjects"
JOHN = {"name": "John Smith", "approx_age": "50"}
SECRETS = ("Jane", "red coat", "tall")  # what must not survive an erasure anywhere


def record_url(record_id, tail: str = "") -> str:
    return f"/api/v1/dpo/records/observation/{record_id}{tail}"


def found(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {r["id"] for r in response.json()["results"]}


@pytest.fixture
def people(world):
    return {
        "jane": world.observe(persons_involved=[JANE, {"description": "friend, green hat"}]),
        "john": world.observe(persons_involved=[JOHN], description="Two men arguing"),
        "jane_in_text": world.observe(persons_involved=[], description="JANE DOE shouting at passers-by"),
        "nobody": world.observe(persons_involved=[{"description": "teenager on a bike", "approx_age": 15}]),
    }


def test_subject_access_finds_every_record_naming_the_person(world, people):
    dpo = world.client("dpo")
    assert found(dpo.get(SUBJECTS, {"name": "jane doe", "purpose": "SAR-1"})) == {people["jane"],
                                                                                 people["jane_in_text"]}
    # Age narrows to a person entry: the free-text mention has no age.
    assert found(dpo.get(SUBJECTS, {"name": "jane", "age_min": 30, "age_max": 40, "purpose": "SAR-1"})) == {
        people["jane"]}
    assert found(dpo.get(SUBJECTS, {"age": 50, "purpose": "SAR-2"})) == {people["john"]}  # "50" as text
    assert found(dpo.get(SUBJECTS, {"description": "RED COAT", "purpose": "SAR-1"})) == {people["jane"]}
    # Without an age, text may be anywhere in the record's free text: the DPO sifts a few
    # extra records rather than miss one (here the hat is her friend's).
    assert found(dpo.get(SUBJECTS, {"name": "jane", "description": "green hat", "purpose": "x"})) == {
        people["jane"]}
    assert found(dpo.get(SUBJECTS, {"name": "jane", "description": "blue hat", "purpose": "x"})) == set()
    # LIKE wildcards in a search are plain characters.
    assert found(dpo.get(SUBJECTS, {"name": "%_", "purpose": "SAR-1"})) == set()

    body = dpo.get(SUBJECTS, {"name": "jane doe", "purpose": "SAR-1"}).json()["results"]
    full = next(r for r in body if r["id"] == people["jane"])
    assert full["persons_involved"][0] == JANE and full["author"] == "warden_leigh"


def test_subject_access_is_logged_with_its_purpose_but_not_the_search(world, people):
    dpo = world.client("dpo")
    assert dpo.get(SUBJECTS, {"name": "jane"}).status_code == 400  # purpose required (the setting's default)
    assert dpo.get(SUBJECTS, {"purpose": "SAR-1"}).status_code == 400  # something to search for
    dpo.get(SUBJECTS, {"name": "jane", "age_min": 30, "purpose": "SAR-2026-014"})
    [entry] = AccessLogEntry.objects.filter(action="consultation", actor=world.users["dpo"])
    assert entry.purpose == "SAR-2026-014"
    assert [str(i) for i in entry.record_ids] == [people["jane"]]
    assert entry.details == {"via": "dpo.subjects", "criteria": ["name", "age_min"], "returned": 1}
    assert "jane" not in json.dumps(entry.details).lower()


def test_purpose_can_be_optional_by_setting(world, people, settings):
    settings.ACCESS_LOG_PURPOSE_REQUIRED = False
    assert found(world.client("dpo").get(SUBJECTS, {"name": "john"})) == {people["john"]}
    assert AccessLogEntry.objects.get(action="consultation", actor=world.users["dpo"]).purpose == ""


@pytest.mark.parametrize("username", ["admin", "analyst", "supervisor_leigh", "warden_leigh"])
def test_only_the_dpo_answers_subject_requests(world, people, username):
    client = world.client(username)
    assert client.get(SUBJECTS, {"name": "jane", "purpose": "x"}).status_code == 403
    assert client.patch(record_url(people["jane"]), {"description": "", "justification": "x"},
                        content_type="application/json").status_code == 403
    assert client.post(record_url(people["jane"], "/erasure"), {"justification": "x"},
                       content_type="application/json").status_code == 403
    assert Observation.objects.get(pk=people["jane"]).persons_involved[0] == JANE


def test_rectification_reaches_the_handheld_and_logs_no_values(world, people):
    handheld = world.handheld("warden_leigh")
    handheld.pull_all()
    review_decide(reviewer=world.users["supervisor_leigh"], record_type="observation",
                  record_id=uuid.UUID(people["jane"]), decision="rejected", note="duplicate")
    corrected = [{"name": "Jane Doe", "description": "blue coat", "approx_age": 43}]
    dpo = world.client("dpo")
    response = dpo.patch(record_url(people["jane"]), {"persons_involved": corrected, "justification": "RECT-3"},
                         content_type="application/json")
    assert response.status_code == 200, response.content
    record = Observation.objects.get(pk=people["jane"])
    assert record.persons_involved == corrected
    assert record.review_state == "rejected"  # not an edit by its makers: still out of analysis
    handheld.pull_all()
    assert handheld.store[("observation", people["jane"])]["data"]["persons_involved"] == corrected

    entry = AccessLogEntry.objects.filter(action="alteration", actor=world.users["dpo"]).get()
    assert entry.purpose == "RECT-3" and entry.details["rectified"] == ["persons_involved"]
    assert "blue coat" not in json.dumps(entry.details) and "red coat" not in json.dumps(entry.details)

    for body, code in (({"qualifier": "personal", "justification": "x"}, 400),  # not a personal field
                       ({"persons_involved": "Jane", "justification": "x"}, 400),  # not a list of objects
                       ({"description": "x"}, 400)):  # no justification
        assert dpo.patch(record_url(people["jane"]), body, content_type="application/json").status_code == code
    assert dpo.patch(record_url(uuid.uuid4()), {"description": "", "justification": "x"},
                     content_type="application/json").status_code == 404


def test_restriction_is_set_and_lifted_and_logged(world, people):
    dpo = world.client("dpo")
    url = record_url(people["john"], "/restriction")
    assert dpo.post(url, {"justification": "accuracy contested"}, content_type="application/json").json()[
        "processing_restricted"] is True
    assert Observation.objects.get(pk=people["john"]).processing_restricted
    # Still found by subject access: restriction keeps the data, it does not hide it from the DPO.
    hit = dpo.get(SUBJECTS, {"name": "john", "purpose": "SAR-3"}).json()["results"][0]
    assert hit["processing_restricted"] is True
    assert dpo.post(url, {"restricted": False, "justification": "resolved"},
                    content_type="application/json").json()["changed"] is True
    assert not Observation.objects.get(pk=people["john"]).processing_restricted
    rows = list(AccessLogEntry.objects.filter(action="alteration", actor=world.users["dpo"]).order_by("id")
                .values_list("details__restriction", "purpose"))
    assert rows == [("applied", "accuracy contested"), ("lifted", "resolved")]
    assert dpo.post(record_url(uuid.uuid4(), "/restriction"), {"justification": "x"},
                    content_type="application/json").status_code == 404


# --- erasure from every copy ---------------------------------------------------------------

def jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (seed, 2 * seed % 256, 3)).save(out, format="JPEG")
    return out.getvalue()


def upload(world, data: bytes) -> str:
    import hashlib

    handheld = world.handheld("warden_leigh")
    address = hashlib.sha256(data).hexdigest()
    response = handheld.client.put(f"/api/v1/attachments/{address}", data=data, content_type="image/jpeg",
                                   **handheld.auth)
    assert response.status_code in (200, 201), response.content
    attachment_thumbnail(address)  # what the Celery task does after the upload commits
    return address


@pytest.fixture
def copies(world, people, settings, tmp_path):
    """Jane's record with a copy of her details in every place the system keeps one."""
    settings.MEDIA_ROOT = tmp_path
    record_id = people["jane"]
    own_photo, shared_photo = upload(world, jpeg(1)), upload(world, jpeg(2))
    warden = world.handheld("warden_leigh")
    assert world.edit("warden_leigh", record_id, 1, photos=[own_photo, shared_photo],
                      description="Jane Doe again, red coat")["status"] == "applied"
    # Another record names one of the photos: that one must stay.
    world.observe(persons_involved=[], photos=[shared_photo])
    # Approved: a later edit from the handheld becomes a conflict (a Conflict row, and a
    # receipt carrying the record's view).
    review_decide(reviewer=world.users["supervisor_leigh"], record_type="observation",
                  record_id=uuid.UUID(record_id), decision="approved")
    conflict = world.edit("warden_leigh", record_id, 3, persons_involved=[{**JANE, "approx_age": 35}])
    assert conflict["status"] == "conflict" and "Jane" in orjson.dumps(conflict["record"]).decode()
    # A rejected mutation, kept whole in quarantine.
    rejected = warden.push_one(mutation("observation", "update", record_id,
                                        {"qualifier": "bogus", "persons_involved": [JANE]}, base_version=3))
    assert rejected["status"] == "rejected"
    # An analyst's export file holding her details.
    disclosure = access_log_records(user=world.users["analyst"], action="disclosure", record_type="observation",
                                    record_ids=[record_id], recipient="analyst (export file)")
    export_id = uuid.uuid4()
    export = Export.objects.create(
        id=export_id, owner=world.users["analyst"], record_type="observation", format="geojson",
        status=Export.Status.READY, access_log_entry=disclosure,
        file_name=default_storage.save(f"exports/{world.users['analyst'].pk}/{export_id}.geojson",
                                       ContentFile(b'{"persons": "Jane Doe, red coat"}')),
    )
    unrelated = Export.objects.create(owner=world.users["analyst"], record_type="observation", format="csv",
                                      status=Export.Status.READY, file_name=default_storage.save(
                                          "exports/other.csv", ContentFile(b"x")))
    attachments = {sha: Attachment.objects.get(pk=sha) for sha in (own_photo, shared_photo)}
    assert all(a.thumbnail for a in attachments.values())
    return {"id": record_id, "own_photo": own_photo, "shared_photo": shared_photo, "export": export,
            "unrelated_export": unrelated, "files": {sha: (a.file.name, a.thumbnail.name)
                                                     for sha, a in attachments.items()}}


def copies_text(record_id) -> str:
    """Every stored copy of the record's data, as one text to search."""
    parts = [
        list(Observation.objects.filter(pk=record_id).values("description", "persons_involved", "photos")),
        list(RecordVersion.objects.filter(record_id=record_id).values_list("data", flat=True)),
        list(Conflict.objects.filter(record_id=record_id).values_list("fields", flat=True)),
        list(Receipt.objects.filter(record_id=record_id).values_list("result", flat=True)),
        list(QuarantinedMutation.objects.filter(record_id=str(record_id)).values_list("payload", flat=True)),
    ]
    return orjson.dumps(parts, default=str).decode()


def test_erasure_cleans_the_record_and_every_copy(world, copies, django_capture_on_commit_callbacks):
    record_id = copies["id"]
    before = copies_text(record_id)
    assert all(secret in before for secret in SECRETS) and copies["own_photo"] in before
    assert Conflict.objects.filter(record_id=record_id).exists()
    assert QuarantinedMutation.objects.filter(record_id=record_id).exists()
    handheld = world.handheld("warden_leigh")
    handheld.pull_all()

    with django_capture_on_commit_callbacks(execute=True):
        response = world.client("dpo").post(record_url(record_id, "/erasure"), {"justification": "ERASE-9"},
                                            content_type="application/json")
    assert response.status_code == 200, response.content

    after = copies_text(record_id)
    for secret in (*SECRETS, copies["own_photo"], copies["shared_photo"]):
        assert secret not in after, secret
    record = Observation.objects.get(pk=record_id)
    assert (record.description, record.persons_involved, record.photos) == ("", [], [])
    assert record.review_state == "approved"  # erasure is no edit: the review stands
    # The conflict still shows which fields clashed; resolving it cannot bring them back.
    conflict = Conflict.objects.get(record_id=record_id)
    assert conflict.fields["persons_involved"] == {"device": [], "server": []}
    # Photos: the record's own one is gone with its thumbnail; the shared one stays.
    assert not Attachment.objects.filter(pk=copies["own_photo"]).exists()
    assert not any(default_storage.exists(name) for name in copies["files"][copies["own_photo"]])
    assert Attachment.objects.filter(pk=copies["shared_photo"]).exists()
    assert all(default_storage.exists(name) for name in copies["files"][copies["shared_photo"]])
    # The export file that held her details is deleted; the other one is not.
    export = Export.objects.get(pk=copies["export"].pk)
    assert export.status == Export.Status.EXPIRED and not default_storage.exists(export.file_name)
    assert default_storage.exists(copies["unrelated_export"].file_name)
    # Handhelds holding the record hear of it.
    handheld.pull_all()
    data = handheld.store[("observation", record_id)]["data"]
    assert (data["description"], data["persons_involved"], data["photos"]) == ("", [], [])

    entry = AccessLogEntry.objects.get(action="erasure")
    assert entry.actor == world.users["dpo"] and entry.purpose == "ERASE-9"
    assert [str(i) for i in entry.record_ids] == [record_id]
    assert entry.details["fields"] == ["description", "persons_involved", "photos"]
    assert entry.details["photos_deleted"] == 1 and entry.details["exports_deleted"] == 1
    assert entry.details["copies"]["conflicts"] == 1 and entry.details["copies"]["quarantined"] == 1
    logged = orjson.dumps(entry.details).decode() + entry.purpose + entry.recipient
    for secret in (*SECRETS, copies["own_photo"], copies["shared_photo"]):
        assert secret not in logged


def test_erasure_of_some_fields_only(world, copies):
    response = world.client("dpo").post(record_url(copies["id"], "/erasure"),
                                        {"justification": "ERASE-10", "fields": ["persons_involved"]},
                                        content_type="application/json")
    assert response.status_code == 200, response.content
    record = Observation.objects.get(pk=copies["id"])
    assert record.persons_involved == [] and "red coat" in record.description and record.photos
    assert "Jane Doe" not in orjson.dumps(list(RecordVersion.objects.filter(record_id=copies["id"])
                                                .values_list("data__persons_involved", flat=True))).decode()
    assert Attachment.objects.filter(pk=copies["own_photo"]).exists()
    bad = world.client("dpo").post(record_url(copies["id"], "/erasure"),
                                   {"justification": "x", "fields": ["qualifier"]}, content_type="application/json")
    assert bad.status_code == 400
