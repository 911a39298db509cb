"""Anchors outside the database: every seal writes its chain head there before it commits,
and `verify_access_log` holds the chain to each. What a database superuser can do (switch
the triggers off, TRUNCATE, cut the end, delete history and re-insert it with every hash
recomputed, and make the seal table agree) is caught; so is an anchor that is missing,
edited or unreadable. The S3 anchor is tested through the same storage interface on the
local filesystem (no network here): only its S3-specific construction is checked on its own."""
from __future__ import annotations

import threading
import time
import uuid

import orjson
import pytest
from django.core.files.storage import FileSystemStorage
from django.db import connection
from django.test import override_settings

from warden_app.accountability.anchors import Anchor, AnchorError, StorageAnchors, anchor_store
from warden_app.accountability.chain import GENESIS, link_hash
from warden_app.accountability.selectors import access_log_verify
from warden_app.accountability.services.access_log import SEAL_LOCK_KEY, access_log_seal
from warden_app.models import AccessLogEntry, AccessLogSeal
from warden_app.services.access_log import access_log_records

from .test_chain import TABLE, chain, verify_command

SEALS = "warden_app_accesslogseal"


@pytest.fixture
def anchor_file(db, tmp_path):
    path = tmp_path / "anchors.log"
    with override_settings(ACCESS_LOG_ANCHOR=f"file://{path}"):
        yield path


def log_rows(n: int, purpose: str = "row") -> list[AccessLogEntry]:
    return [access_log_records(user=None, action="consultation", record_type="observation",
                               record_ids=[uuid.uuid4()], purpose=f"{purpose} {i}") for i in range(n)]


def lines(path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def as_superuser(*statements: tuple[str, list] | str) -> None:
    """What an attacker holding a superuser's (or the owner's) credentials runs: the log's
    and the seal table's triggers off, the statements, the triggers on again."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER USER")
        cursor.execute(f"ALTER TABLE {SEALS} DISABLE TRIGGER USER")
        for statement in statements:
            sql, params = (statement, []) if isinstance(statement, str) else statement
            cursor.execute(sql, params)
        cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER USER")
        cursor.execute(f"ALTER TABLE {SEALS} ENABLE TRIGGER USER")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def sealed_in_three(anchor_file) -> list[dict]:
    log_rows(6)
    assert access_log_seal(batch=2).rows == 6  # three sealing transactions
    return chain()


def test_each_seal_appends_its_head_before_it_commits(anchor_file):
    links = sealed_in_three(anchor_file)
    seals = list(AccessLogSeal.objects.order_by("id").values("id", "head_seq", "head_id", "head_hash", "rows"))
    assert [(s["head_seq"], s["rows"]) for s in seals] == [(2, 2), (4, 2), (6, 2)]
    written = lines(anchor_file)
    assert [(a["seal"], a["seq"], a["log_id"], a["hash"]) for a in written] == [
        (s["id"], s["head_seq"], s["head_id"], s["head_hash"]) for s in seals]
    assert [a["hash"] for a in written] == [links[1]["hash"], links[3]["hash"], links[5]["hash"]]
    assert all(a["at"].endswith("+00:00") for a in written)

    log_rows(1, "later")
    access_log_seal()
    after = lines(anchor_file)
    assert after[:3] == written and after[3]["seq"] == 7  # appended, nothing before it rewritten

    code, out = verify_command()
    assert code == 0, out
    assert f"anchor file://{anchor_file}: 4 heads, every one reproduced, the last at seq 7" in out
    assert "4 seals in the database, every one anchored" in out


def test_a_head_that_cannot_be_anchored_is_not_sealed(db, tmp_path):
    log_rows(3)
    with (override_settings(ACCESS_LOG_ANCHOR=f"file://{tmp_path}/no/such/dir/anchors.log"),
          pytest.raises(AnchorError, match="cannot open")):
        access_log_seal()
    assert AccessLogEntry.objects.filter(seq__isnull=False).count() == 0  # rolled back
    assert AccessLogSeal.objects.count() == 0
    with override_settings(ACCESS_LOG_ANCHOR=f"file://{tmp_path}/anchors.log"):
        assert access_log_seal().rows == 3  # the next run seals them, anchored
        assert access_log_verify().ok
    assert [a["seq"] for a in lines(tmp_path / "anchors.log")] == [3]


def test_truncation_is_caught_even_with_a_new_chain_built_after_it(anchor_file):
    sealed_in_three(anchor_file)
    as_superuser(f"TRUNCATE {TABLE}, {SEALS} CASCADE")
    assert access_log_verify(store=None).ok  # an empty log and no seals: the database alone is fooled
    result = access_log_verify()
    assert not result.ok and result.broken_seq == 2
    assert "beyond the end of the chain (seq 0)" in result.problem and "emptied" in result.problem
    code, out = verify_command()
    assert code == 1 and "BROKEN" in out and "seq 2, beyond the end of the chain (seq 0)" in out

    # The attacker writes a new history and seals it, chain and seal table consistent.
    log_rows(8, "fake")
    access_log_seal()
    assert access_log_verify(store=None).ok
    result = access_log_verify()
    assert not result.ok and result.broken_seq == 2 and "does not match the anchor of seal" in result.problem


def test_a_cut_tail_is_caught(anchor_file):
    links = sealed_in_three(anchor_file)
    cut = [link["id"] for link in links[4:]]
    as_superuser((f"DELETE FROM {TABLE} WHERE id = ANY(%s)", [cut]),
                 (f"DELETE FROM {SEALS} WHERE head_seq > 4", []))
    assert access_log_verify(store=None).ok  # the chain and the database's seals still agree
    result = access_log_verify()
    assert not result.ok and result.broken_seq == 6 and result.head_seq == 4
    assert "names seq 6, beyond the end of the chain (seq 4)" in result.problem


def test_history_deleted_and_reinserted_with_recomputed_hashes_is_caught(anchor_file):
    """The strongest attacker inside the database: deletes seq 3 on, re-inserts those rows
    under their own ids and xids with one purpose changed, recomputes every hash from seq 3,
    and rewrites the seal table to match. Nothing inside the database disagrees now."""
    links = sealed_in_three(anchor_file)
    rows = list(AccessLogEntry.objects.filter(seq__gte=3).order_by("seq").values())
    rows[0]["purpose"] = "nothing to see"
    prev, statements = links[1]["hash"], [(f"DELETE FROM {TABLE} WHERE seq >= 3", []),
                                          (f"DELETE FROM {SEALS} WHERE head_seq >= 3", [])]
    for row in rows:
        row["hash"] = link_hash(prev, row, row["seq"])
        statements.append((
            f"INSERT INTO {TABLE} (id, at, actor_id, action, record_type, record_ids, device_id, recipient, "
            "purpose, details, xid, seq, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s::uuid[], %s, %s, %s, "
            "%s::jsonb, %s, %s, %s, %s)",
            [row["id"], row["at"], row["actor_id"], row["action"], row["record_type"],
             [str(r) for r in row["record_ids"]], row["device_id"], row["recipient"], row["purpose"],
             orjson.dumps(row["details"]).decode(), row["xid"], row["seq"], prev, row["hash"]],
        ))
        prev = row["hash"]
    for seq in (4, 6):  # the seals again, under their own ids, with the forged heads
        forged, seal = rows[seq - 3], AccessLogSeal.objects.get(head_seq=seq)
        statements.append((f"INSERT INTO {SEALS} (id, at, head_seq, head_id, head_hash, rows) "
                           "VALUES (%s, %s, %s, %s, %s, 2)", [seal.pk, seal.at, seq, forged["id"], forged["hash"]]))
    as_superuser(*statements)
    assert AccessLogEntry.objects.get(seq=3).purpose == "nothing to see"

    assert access_log_verify(store=None).ok  # chain and seal table: consistent
    result = access_log_verify()
    assert not result.ok and result.broken_seq == 4 and result.checked == 3
    assert "does not match the anchor of seal" in result.problem and "rewritten" in result.problem
    code, out = verify_command()
    assert code == 1 and "seq 4" in out and "does not match the anchor" in out


def test_an_anchor_missing_edited_or_unreadable_fails_the_verification(anchor_file):
    sealed_in_three(anchor_file)
    original = anchor_file.read_bytes()
    assert access_log_verify().ok

    anchor_file.unlink()
    result = access_log_verify()
    assert not result.ok and "the anchor is missing" in result.problem

    # One head edited.
    edited = lines_from(original)
    edited[1]["hash"] = "f" * 64
    anchor_file.write_bytes(b"".join(orjson.dumps(a) + b"\n" for a in edited))
    result = access_log_verify()
    assert not result.ok and result.broken_seq == 4 and "does not match the anchor" in result.problem

    # One head removed: its seal, in the database, has no anchor now.
    kept = lines_from(original)
    del kept[2]
    anchor_file.write_bytes(b"".join(orjson.dumps(a) + b"\n" for a in kept))
    result = access_log_verify()
    assert not result.ok and "has no anchor" in result.problem and result.broken_seq == 6

    # Garbage, and a line missing a field.
    bad_hash = b'{"seal": 1, "seq": 2, "log_id": 1, "hash": "x", "at": ""}\n'
    for junk in (b"not json\n", b'{"seal": 1, "seq": 2}\n', bad_hash):
        anchor_file.write_bytes(original + junk)
        result = access_log_verify()
        assert not result.ok and "line 4 is not an anchor" in result.problem, junk

    # Unreadable (a directory where the file was: root reads any file, so no chmod here).
    anchor_file.unlink()
    anchor_file.mkdir()
    result = access_log_verify()
    assert not result.ok and "cannot be read" in result.problem
    code, out = verify_command()
    assert code == 1 and "the anchor cannot be read" in out


def lines_from(raw: bytes) -> list[dict]:
    return [orjson.loads(line) for line in raw.splitlines() if line.strip()]


def test_verify_reads_another_copy_of_the_anchor(anchor_file, tmp_path):
    """The DPO may keep a copy of the anchors (or the operator a second store): pass its URL."""
    sealed_in_three(anchor_file)
    copy = tmp_path / "dpo-copy.log"
    copy.write_bytes(anchor_file.read_bytes())
    anchor_file.write_bytes(b"")  # the configured one emptied
    assert verify_command()[0] == 1
    code, out = verify_command("--anchor-url", f"file://{copy}")
    assert code == 0 and f"anchor file://{copy}: 3 heads" in out


def test_without_an_anchor_verify_says_what_it_cannot_see(db):
    log_rows(2)
    access_log_seal()
    code, out = verify_command()
    assert code == 0 and "WARNING: no anchor is configured (ACCESS_LOG_ANCHOR)" in out


# --- the object-store anchor, through the same Storage interface -------------------------------

def test_the_object_store_anchor_writes_one_object_per_seal_and_never_overwrites(db, tmp_path, monkeypatch):
    store = StorageAnchors(FileSystemStorage(location=tmp_path / "bucket"), "s3://test-bucket/anchors")
    with pytest.raises(AnchorError, match="does not exist"):
        store.read()
    log_rows(4)
    # The sealer's own path: every seal asks anchor_store() for the configured store.
    monkeypatch.setattr("warden_app.accountability.services.access_log.anchor_store", lambda: store)
    access_log_seal(batch=2)
    seal_ids = list(AccessLogSeal.objects.order_by("id").values_list("id", flat=True))
    names = sorted(p.name for p in (tmp_path / "bucket").iterdir())
    assert names == [StorageAnchors.name(i) for i in seal_ids] == [f"seal-{i:012d}.json" for i in seal_ids]
    assert [a.seal for a in store.read()] == seal_ids
    assert access_log_verify(store=store).ok

    # Reading fetches only the newest heads, yet every seal must still be there by name.
    newest = StorageAnchors(store.storage, store.url, read_last=1)
    assert [a.seal for a in newest.read()] == seal_ids[-1:] and newest.seals == set(seal_ids)
    assert access_log_verify(store=newest).ok
    (tmp_path / "bucket" / names[0]).rename(tmp_path / "aside.json")
    result = access_log_verify(store=newest)
    assert not result.ok and f"seal {seal_ids[0]} (seq 2) has no anchor" in result.problem
    (tmp_path / "aside.json").rename(tmp_path / "bucket" / names[0])

    first = store.read()[0]
    with pytest.raises(AnchorError, match="never overwritten"):
        store.append(Anchor(seal=first.seal, seq=first.seq, log_id=first.log_id, hash=GENESIS, at=first.at))
    assert store.read()[0] == first

    # An object holding another seal's head, and a stray object: both refused on reading.
    (tmp_path / "bucket" / names[0]).write_bytes(store.read()[1].encoded())
    with pytest.raises(AnchorError, match="holds the anchor of seal"):
        store.read()
    (tmp_path / "bucket" / names[0]).write_bytes(first.encoded())
    (tmp_path / "bucket" / "notes.txt").write_text("x")
    result = access_log_verify(store=store)
    assert not result.ok and "is not an anchor's name" in result.problem


def test_the_s3_anchor_url_names_the_bucket_and_prefix():
    """Configuration only (no network here): s3://bucket/prefix is django-storages' S3Storage
    on that bucket, keys under the prefix, an existing key never replaced."""
    with override_settings(ACCESS_LOG_ANCHOR="s3://audit-anchors/fieldsync/prod",
                           ACCESS_LOG_ANCHOR_S3_OPTIONS={"endpoint_url": None, "region_name": "eu-west-2",
                                                         "addressing_style": None}):
        store = anchor_store()
    from storages.backends.s3 import S3Storage

    assert isinstance(store, StorageAnchors) and isinstance(store.storage, S3Storage)
    assert store.storage.bucket_name == "audit-anchors" and store.storage.location == "fieldsync/prod"
    assert store.storage.file_overwrite is False and store.url == "s3://audit-anchors/fieldsync/prod"
    assert anchor_store("") is None
    from django.core.exceptions import ImproperlyConfigured

    for bad in ("file://relative/path", "http://example.org/x", "s3:///no-bucket"):
        with pytest.raises(ImproperlyConfigured):
            anchor_store(bad)


# --- real concurrent sealers --------------------------------------------------------------------

def test_concurrent_sealers_anchor_each_head_once_in_chain_order(transactional_db, tmp_path):
    """Three sealers queue on the seal lock (seen waiting in pg_stat_activity) while a fourth
    connection holds it; once it is released each seals in turn, and the anchor file holds one
    line per seal, in seal order, heads rising: the anchor is written under the seal's lock."""
    from .test_chain import raw_connection

    path = tmp_path / "anchors.log"
    log_rows(30)
    errors: list[Exception] = []

    def seal() -> None:
        try:
            access_log_seal(batch=7)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    holder = raw_connection()
    with override_settings(ACCESS_LOG_ANCHOR=f"file://{path}"):
        try:
            holder.execute("SELECT pg_advisory_xact_lock(%s)", [SEAL_LOCK_KEY])
            threads = [threading.Thread(target=seal) for _ in range(3)]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 30
            while True:
                waiting = holder.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND wait_event = 'advisory'").fetchone()[0]
                holder.execute("SELECT pg_stat_clear_snapshot()")
                if waiting == 3 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert waiting == 3  # every sealer is queued behind the holder: they overlap
        finally:
            holder.rollback()
            holder.close()
        for thread in threads:
            thread.join(60)
        assert not errors
        assert access_log_verify().ok
    seals = list(AccessLogSeal.objects.order_by("id").values_list("id", "head_seq"))
    written = [(a["seal"], a["seq"]) for a in lines(path)]
    assert written == seals and len(seals) == 5  # 30 rows in batches of 7
    assert [seq for _, seq in written] == sorted({seq for _, seq in written}) and written[-1][1] == 30
