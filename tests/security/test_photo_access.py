"""A photo's sha256 is not a key to someone else's evidence (fieldsync/sync/photo_access.py).

- HEAD /api/v1/attachments/<sha> answers 200 only to a user who uploaded the photo or may
  pull a record naming it with its photos; to anyone else 404, exactly as for a photo that
  does not exist (same status, same headers, same statements).
- A record may name a photo only if its author may see it, or if it is not stored yet and no
  record names it: the push order of docs/sync.md (record first, photo after) keeps working,
  and an attacker who learnt a sha cannot attach the photo to a record of theirs to get its
  thumbnail on the desk, whether the photo is stored yet or only named by its own record.

Real handhelds (device tokens) through Django's test client, real PostgreSQL and Redis.
"""
from __future__ import annotations

import hashlib
import time
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.analysis.conftest import build_analysis_world
from tests.sync.conftest import IN_LEIGH, IN_WIGAN, mutation, observation_data

from .conftest import png

HIDDEN_HEADERS = {"Date"}


@pytest.fixture
def world(db, media, own_cache, settings):
    settings.SYNC_ENROL_RATE = settings.SYNC_DEVICE_RATE = "100000/min"
    return build_analysis_world()


def upload(handheld, data: bytes, expect: int = 201) -> str:
    sha = hashlib.sha256(data).hexdigest()
    response = handheld.client.put(f"/api/v1/attachments/{sha}", data=data, content_type="image/png",
                                   **handheld.auth)
    assert response.status_code == expect, response.content
    return sha


def head(handheld, sha: str):
    return handheld.client.head(f"/api/v1/attachments/{sha}", **handheld.auth)


def create(handheld, at=IN_LEIGH, **data) -> dict:
    return handheld.push_one(mutation("observation", "create", uuid.uuid4(), observation_data(at=at, **data)))


def refused_for_photo(result: dict) -> bool:
    return (result["status"] == "rejected" and result["code"] == "validation_failed"
            and result["errors"]["photos"][0]["code"] == "photo_unavailable")


def test_the_documented_order_works_record_first_then_the_photo(world):
    """docs/sync.md: a handheld pushes its record naming a photo not stored yet, then uploads
    it; HEAD tells it whether the upload is still to do."""
    leigh = world.handheld("warden_leigh")
    photo = png((10, 20, 30))
    sha = hashlib.sha256(photo).hexdigest()
    assert create(leigh, photos=[sha])["status"] == "applied"
    assert head(leigh, sha).status_code == 404  # not uploaded yet
    assert leigh.client.get("/api/v1/sync/status", **leigh.auth).json()["missing_attachments"][0]["sha256"] == sha
    upload(leigh, photo)
    assert head(leigh, sha).status_code == 200
    # The author names it again in another record, and in an edit of a third.
    assert create(leigh, photos=[sha])["status"] == "applied"
    record_id = uuid.uuid4()
    assert leigh.push_one(mutation("observation", "create", record_id, observation_data()))["status"] == "applied"
    edit = leigh.push_one(mutation("observation", "update", record_id, {"photos": [sha]}, base_version=1))
    assert edit["status"] == "applied", edit
    # Photo first, record after works too (the uploader's own photo).
    other = upload(leigh, png((11, 21, 31)))
    assert create(leigh, photos=[other])["status"] == "applied"


def test_head_confirms_a_photo_only_to_who_may_see_it(world):
    leigh, wigan = world.handheld("warden_leigh"), world.handheld("warden_wigan")
    supervisor = world.handheld("supervisor_leigh")
    evidence = upload(leigh, png((200, 0, 0)))
    assert create(leigh, photos=[evidence])["status"] == "applied"
    loose = upload(leigh, png((0, 200, 0)))  # uploaded, not (yet) named by any record
    absent = hashlib.sha256(b"never uploaded").hexdigest()

    assert head(leigh, evidence).status_code == 200 and head(leigh, loose).status_code == 200
    assert head(supervisor, evidence).status_code == 200  # pulls Leigh's records, photos shown
    assert head(supervisor, loose).status_code == 404  # named by nothing they can see
    for sha in (evidence, loose, absent):
        assert head(wigan, sha).status_code == 404
    # No oracle: the refusal for a stored photo is the answer for an absent one, header for header.
    hidden, missing = head(wigan, evidence), head(wigan, absent)
    assert {k: v for k, v in hidden.items() if k not in HIDDEN_HEADERS} == \
        {k: v for k, v in missing.items() if k not in HIDDEN_HEADERS}
    assert hidden.content == missing.content == b""


def test_head_runs_the_same_statements_for_a_hidden_photo_and_an_absent_one(world):
    """The timing class: the same queries for a stored photo no record names and a photo that
    does not exist (one for attachments, one per type with photos); and the times measured."""
    leigh, wigan = world.handheld("warden_leigh"), world.handheld("warden_wigan")
    loose = upload(leigh, png((1, 200, 0)))
    absent = hashlib.sha256(b"nothing").hexdigest()
    head(wigan, absent)  # warm: the device look-up and its caches

    def statements(sha):
        with CaptureQueriesContext(connection) as seen:
            assert head(wigan, sha).status_code == 404
        return [q["sql"].split(" WHERE ")[0] for q in seen.captured_queries]

    assert statements(loose) == statements(absent)

    def median(sha):
        times = []
        for _ in range(15):
            started = time.perf_counter()
            head(wigan, sha)
            times.append(time.perf_counter() - started)
        return sorted(times)[7]

    hidden_s, absent_s = median(loose), median(absent)
    print(f"HEAD 404 median: stored but hidden {hidden_s * 1000:.2f} ms, absent {absent_s * 1000:.2f} ms")
    assert hidden_s < absent_s * 3 and absent_s < hidden_s * 3


def test_nobody_can_attach_someone_elses_stored_photo_to_their_own_record(world):
    """The attack: the Wigan warden learnt the sha of a Leigh evidence photo and names it in a
    record of their own, hoping for its thumbnail on the desk (theirs or their supervisor's)."""
    from fieldsync.sync.models import QuarantinedMutation
    from warden_app.models import Observation

    leigh, wigan = world.handheld("warden_leigh"), world.handheld("warden_wigan")
    evidence = upload(leigh, png((220, 10, 10)))
    assert create(leigh, photos=[evidence])["status"] == "applied"
    before = Observation.objects.filter(photos__contains=[evidence]).count()

    result = create(wigan, at=IN_WIGAN, photos=[evidence])
    assert refused_for_photo(result), result
    assert QuarantinedMutation.objects.filter(mutation_id=result["mutation_id"]).exists()
    # Nor by editing a record of their own, nor mixed in with a photo of their own.
    own = uuid.uuid4()
    assert wigan.push_one(mutation("observation", "create", own, observation_data(at=IN_WIGAN)))["status"] == "applied"
    mine = upload(wigan, png((5, 5, 5)))
    edit = wigan.push_one(mutation("observation", "update", own, {"photos": [mine, evidence]}, base_version=1))
    assert refused_for_photo(edit), edit
    assert Observation.objects.get(pk=own).photos == []
    assert Observation.objects.filter(photos__contains=[evidence]).count() == before
    # A stored photo nobody has named yet is the uploader's: not claimable either.
    loose = upload(leigh, png((9, 9, 9)))
    assert refused_for_photo(create(wigan, at=IN_WIGAN, photos=[loose]))
    assert create(leigh, photos=[loose])["status"] == "applied"


def test_a_photo_named_before_upload_is_claimed_by_its_record(world):
    """Before the upload, the sha is already named by its author's record: an attacker who
    names it then gets the same refusal, and the photo, once uploaded, is not theirs."""
    leigh, wigan = world.handheld("warden_leigh"), world.handheld("warden_wigan")
    photo = png((123, 45, 67))
    sha = hashlib.sha256(photo).hexdigest()
    assert create(leigh, photos=[sha])["status"] == "applied"
    assert refused_for_photo(create(wigan, at=IN_WIGAN, photos=[sha]))
    upload(leigh, photo)
    assert refused_for_photo(create(wigan, at=IN_WIGAN, photos=[sha]))
    assert head(wigan, sha).status_code == 404


def test_a_colleague_who_may_see_the_photo_may_name_it(world):
    """Visibility, not ownership: the Leigh supervisor pulls the warden's record with its photo
    and names the same photo in a record of their own."""
    leigh, supervisor = world.handheld("warden_leigh"), world.handheld("supervisor_leigh")
    evidence = upload(leigh, png((40, 40, 200)))
    assert create(leigh, photos=[evidence])["status"] == "applied"
    assert any(evidence in (c.get("data") or {}).get("photos", []) for c in supervisor.pull_all())
    assert create(supervisor, photos=[evidence])["status"] == "applied"


# --- GET /api/v1/attachments/<sha> and its thumbnail: the bytes, to who may see them ----------

def get_photo(handheld, sha: str, suffix: str = ""):
    return handheld.client.get(f"/api/v1/attachments/{sha}{suffix}", **handheld.auth)


def test_get_hands_a_photo_and_its_thumbnail_only_to_who_may_see_it_and_logs_each(world):
    """The handheld shows a sent photo from the server once its own copy is dropped. The
    bytes go only where HEAD says 200, each read is a consultation of the record naming it,
    never cached by a proxy nor sniffed as something else."""
    from fieldsync.sync.tasks import attachment_thumbnail
    from tests.analysis.conftest import last_log_id, reads_logged

    leigh, wigan, pcso = world.handheld("warden_leigh"), world.handheld("warden_wigan"), world.handheld("pcso_leigh")
    supervisor = world.handheld("supervisor_leigh")
    photo = png((90, 10, 10))
    evidence = upload(leigh, photo)
    record = create(leigh, photos=[evidence])
    assert record["status"] == "applied"
    attachment_thumbnail(evidence)
    wigan_photo = upload(wigan, png((10, 90, 10)))
    assert create(wigan, at=IN_WIGAN, photos=[wigan_photo])["status"] == "applied"

    since = last_log_id()
    full = get_photo(leigh, evidence)
    assert full.status_code == 200 and b"".join(full.streaming_content) == photo
    assert full["Content-Type"] == "image/png"
    assert "private" in full["Cache-Control"] and "no-store" in full["Cache-Control"]
    assert full["X-Content-Type-Options"] == "nosniff"
    thumb = get_photo(supervisor, evidence, "/thumbnail")
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/jpeg"
    assert b"".join(thumb.streaming_content)[:3] == b"\xff\xd8\xff"
    rows = reads_logged(since)
    assert [(r.actor.username, r.record_type, [str(i) for i in r.record_ids], r.purpose) for r in rows] == [
        ("warden_leigh", "observation", [record["id"]], "photo to the user's handheld"),
        ("supervisor_leigh", "observation", [record["id"]], "photo thumbnail to the user's handheld"),
    ]
    assert rows[0].device_id is not None

    # The attacker's requests: another area's photo, a council warden's photo to the police
    # PCSO of the same area (personal: not shared), a photo never stored. 404 alike, no bytes, no log.
    since = last_log_id()
    absent = hashlib.sha256(b"never stored at all").hexdigest()
    answers = [get_photo(wigan, evidence), get_photo(wigan, evidence, "/thumbnail"), get_photo(pcso, evidence),
               get_photo(leigh, wigan_photo), get_photo(leigh, absent), get_photo(leigh, absent, "/thumbnail")]
    assert [a.status_code for a in answers] == [404] * 6
    assert {a.json()["code"] for a in answers} == {"not_found"}
    assert answers[0].content == get_photo(wigan, absent).content
    assert reads_logged(since) == []

    # Malformed addresses: 400 (or no route at all), never a file of the storage.
    for bad in (evidence.upper(), evidence[:63], evidence + "0", "٣" * 64, "..%2F..%2Fsettings.py",
                "%2e%2e", evidence[:60] + "%00aa"):
        for suffix in ("", "/thumbnail"):
            answer = get_photo(leigh, bad, suffix)
            assert answer.status_code in (400, 404), (bad, answer.status_code)
            assert answer["Content-Type"].startswith("application/json"), bad
    assert get_photo(leigh, "٣" * 64).status_code == 400  # unicode digits are not hex
    assert reads_logged(since) == []

    # No token, and a revoked handheld: 401, nothing handed over.
    from fieldsync.sync.services.devices import device_revoke

    assert leigh.client.get(f"/api/v1/attachments/{evidence}").status_code == 401
    device_revoke(device=_device(leigh), by=world.users["supervisor_leigh"])
    assert get_photo(leigh, evidence).status_code == 401
    assert get_photo(leigh, evidence, "/thumbnail").status_code == 401
    assert reads_logged(since) == []


def _device(handheld):
    from fieldsync.sync.models import Device

    return Device.objects.get(pk=handheld.device_id)
