"""Photos over the real HTTP stack: content-addressed upload, checks by content, metadata
stripped, resumable, and records that arrive before their photos (protocol sections 6, 7).

Real PostgreSQL, real files (a per-test MEDIA_ROOT), real Pillow images; nothing mocked.
"""
from __future__ import annotations

import hashlib
import io
import os
import struct
import threading
import time
import uuid
import zlib
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from PIL import Image, PngImagePlugin

from fieldsync.sync.models import Attachment

from .conftest import mutation, observation_data
from .pushkit import assert_error

GPS_IFD = 0x8825
GPS = {1: "N", 2: (53.0, 29.0, 51.0), 3: "W", 4: (2.0, 31.0, 1.0), 6: 42.0}
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="53,29.85N" '
       b'exif:GPSLongitude="2,31.02W"/></rdf:RDF></x:xmpmeta>')


# ---------------------------------------------------------------- helpers


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def gps_exif(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "FieldCam"  # Make
    exif[0xA431] = "SERIAL-0042"  # BodySerialNumber: a device identifier, also metadata
    if orientation:
        exif[0x0112] = orientation
    exif[GPS_IFD] = GPS
    return exif


def noise(size=(64, 48), mode="RGB") -> Image.Image:
    """Real-looking pixels (random), so JPEG data is not trivially small."""
    width, height = size
    return Image.frombytes(mode, size, (bytes(range(256)) * (width * height * len(mode) // 256 + 1))
                           [: width * height * len(mode)])


def jpeg_with_gps(size=(64, 48), orientation: int | None = None) -> bytes:
    out = io.BytesIO()
    noise(size).save(out, format="JPEG", quality=92, exif=gps_exif(orientation).tobytes())
    data = out.getvalue()
    source = Image.open(io.BytesIO(data)).getexif()
    assert source.get_ifd(GPS_IFD), "the test photo must really carry GPS"
    return data


def png_with_location_text(size=(40, 30)) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("GPS", "53.4975,-2.517")
    info.add_text("Comment", "taken at 53.4975 -2.517")
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    out = io.BytesIO()
    noise(size, "RGBA").save(out, format="PNG", pnginfo=info, exif=gps_exif().tobytes())
    data = out.getvalue()
    reopened = Image.open(io.BytesIO(data))
    reopened.load()
    assert "GPS" in reopened.text and "XML:com.adobe.xmp" in reopened.info
    return data


def png_bytes(size=(16, 16)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(out, format="PNG")
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header declares width x height pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def put(handheld, data: bytes, content_type: str, address: str | None = None):
    return handheld.client.put(f"/api/v1/attachments/{address or sha(data)}", data=data,
                               content_type=content_type, **handheld.auth)


def head(handheld, address: str):
    return handheld.client.head(f"/api/v1/attachments/{address}", **handheld.auth)


CLOSED_PORT = "redis://127.0.0.1:1/0"


@contextmanager
def celery_redis(url: str):
    """Point this process's Celery (broker and result store) at `url` for a while.

    Celery reads CELERY_BROKER_URL / CELERY_RESULT_BACKEND from the environment ahead of
    its configuration (so `app.conf.broker_url = ...` does nothing while var/env sets
    them): the environment is what changes, and the pooled broker connections and the
    result backend are dropped so the next publish connects afresh.
    """
    from fieldsync.celery import app

    names = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
    saved = {name: os.environ.get(name) for name in names}

    def reconnect():
        app._pool = None
        if "amqp" in app.__dict__:
            app.amqp._producer_pool = None
        app._backend_cache = None
        app._local.__dict__.pop("backend", None)

    os.environ.update(dict.fromkeys(names, url))
    reconnect()
    try:
        assert app.connection_for_write().as_uri().endswith(url.split("@")[-1].split("//")[-1])
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reconnect()


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def assert_nothing_stored(media: Path) -> None:
    assert Attachment.objects.count() == 0
    assert files_under(media) == []


@pytest.fixture
def handheld(world):
    return world.enrol("warden")


# ---------------------------------------------------------------- storing


def test_jpeg_is_stored_without_exif_or_gps(handheld, media):
    data = jpeg_with_gps((64, 48))
    response = put(handheld, data, "image/jpeg")
    assert response.status_code == 201, response.content
    assert response.json() == {"sha256": sha(data), "size": len(data), "content_type": "image/jpeg"}

    row = Attachment.objects.get()
    assert (row.sha256, row.size, row.content_type, row.width, row.height) == (
        sha(data), len(data), "image/jpeg", 64, 48)
    assert row.uploaded_by_id == uuid.UUID(handheld.device_id)
    stored = Path(row.file.path).read_bytes()
    assert Path(row.file.path).is_relative_to(media)
    image = Image.open(io.BytesIO(stored))
    assert image.format == "JPEG" and image.size == (64, 48)
    exif = image.getexif()
    assert GPS_IFD not in exif and not exif.get_ifd(GPS_IFD)
    assert len(exif) == 0
    assert b"Exif\x00\x00" not in stored and b"FieldCam" not in stored and b"SERIAL-0042" not in stored
    assert "exif" not in image.info


def test_an_upright_jpeg_keeps_its_own_pixels_and_loses_every_metadata_segment(handheld, media):
    """No second lossy encoding of evidence: the stored picture decodes to the very pixels
    sent. EXIF with GPS, XMP, an ICC profile, a comment, and a trailer after the picture's
    end (where some cameras hide more) are all gone."""
    out = io.BytesIO()
    noise((64, 48)).save(out, format="JPEG", quality=80, exif=gps_exif().tobytes(),
                         icc_profile=b"\x00" * 128 + b"FieldCam ICC")
    plain = out.getvalue()
    xmp = b"http://ns.adobe.com/xap/1.0/\x00" + XMP
    comment = b"taken at 53.4975,-2.517"
    data = (plain[:2] + b"\xff\xe1" + struct.pack(">H", len(xmp) + 2) + xmp
            + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + plain[2:] + b"GPS 53.4975 -2.517")
    assert put(handheld, data, "image/jpeg").status_code == 201
    stored = Path(Attachment.objects.get().file.path).read_bytes()
    image = Image.open(io.BytesIO(stored))
    assert image.tobytes() == Image.open(io.BytesIO(plain)).tobytes()
    for marker in (b"Exif\x00\x00", b"xmpmeta", b"ICC_PROFILE", b"FieldCam", b"SERIAL-0042", b"53.4975"):
        assert marker not in stored, marker
    assert stored.endswith(b"\xff\xd9") and "exif" not in image.info and "icc_profile" not in image.info
    # What is left is the picture's own data, byte for byte: the scan is where it was sent.
    scan = plain[plain.index(b"\xff\xda"):]
    assert stored.endswith(scan)


def test_segments_a_decoder_skips_cannot_carry_data_into_the_stored_photo(handheld, media):
    """Adobe's APP14 is kept for its colour transform alone, rewritten: bytes padded after
    it go; so does a DNL segment, which decoders skip unread."""
    out = io.BytesIO()
    noise((64, 48)).save(out, format="JPEG", quality=80)
    plain = out.getvalue()
    adobe = b"Adobe\x00\x64\x00\x00\x00\x00\x01" + b"lat=53.4975 lon=-2.517"
    dnl = b"\x00\x30" + b"lat=53.4975"
    data = (plain[:2] + b"\xff\xee" + struct.pack(">H", len(adobe) + 2) + adobe
            + b"\xff\xdc" + struct.pack(">H", len(dnl) + 2) + dnl + plain[2:])
    assert put(handheld, data, "image/jpeg").status_code == 201
    stored = Path(Attachment.objects.get().file.path).read_bytes()
    assert b"53.4975" not in stored and b"\xff\xdc" not in stored[: stored.index(b"\xff\xda")]
    assert b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x01" in stored
    assert Image.open(io.BytesIO(stored)).tobytes() == Image.open(io.BytesIO(plain)).tobytes()


def test_exif_orientation_is_applied_before_it_is_stripped(handheld, media):
    data = jpeg_with_gps((40, 30), orientation=6)  # "rotate 90° clockwise to view"
    assert put(handheld, data, "image/jpeg").status_code == 201
    row = Attachment.objects.get()
    image = Image.open(row.file.path)
    assert image.size == (30, 40)
    assert (row.width, row.height) == (30, 40)  # what is stored, not what the header said
    assert 0x0112 not in image.getexif()


def test_png_text_xmp_and_exif_chunks_are_stripped(handheld, media):
    data = png_with_location_text((40, 30))
    response = put(handheld, data, "image/png")
    assert response.status_code == 201, response.content
    row = Attachment.objects.get()
    stored = Path(row.file.path).read_bytes()
    image = Image.open(io.BytesIO(stored))
    image.load()
    assert image.format == "PNG" and image.size == (40, 30) and image.mode == "RGBA"
    assert image.text == {}
    assert "XML:com.adobe.xmp" not in image.info and "exif" not in image.info
    assert not image.getexif().get_ifd(GPS_IFD)
    for marker in (b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"53.4975", b"xmpmeta", b"FieldCam"):
        assert marker not in stored, marker
    # The pixels themselves survive untouched (PNG is lossless).
    assert image.tobytes() == Image.open(io.BytesIO(data)).tobytes()


def test_webp_is_accepted_and_stripped(handheld, media):
    out = io.BytesIO()
    noise((32, 24)).save(out, format="WEBP", exif=gps_exif().tobytes())
    data = out.getvalue()
    assert put(handheld, data, "image/webp").status_code == 201
    image = Image.open(Attachment.objects.get().file.path)
    assert image.format == "WEBP" and image.size == (32, 24)
    assert not image.getexif().get_ifd(GPS_IFD) and "exif" not in image.info


def test_multi_picture_camera_jpeg_is_kept_as_a_plain_jpeg(handheld, media):
    """Phones write JPEGs with extra pictures (depth map, preview) that Pillow names MPO;
    each picture can carry its own EXIF. Only the first picture's pixels are kept."""
    first, second = noise((64, 48)), Image.new("RGB", (64, 48), "blue")
    out = io.BytesIO()
    first.save(out, format="MPO", save_all=True, append_images=[second], exif=gps_exif().tobytes())
    data = out.getvalue()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    response = put(handheld, data, "image/jpeg")
    assert response.status_code == 201, response.content
    assert response.json()["content_type"] == "image/jpeg"
    image = Image.open(Attachment.objects.get().file.path)
    assert image.format == "JPEG" and image.size == (64, 48) and getattr(image, "n_frames", 1) == 1
    assert not image.getexif().get_ifd(GPS_IFD) and "exif" not in image.info


def test_second_put_is_idempotent(handheld, media):
    data = jpeg_with_gps()
    assert put(handheld, data, "image/jpeg").status_code == 201
    stored_before = files_under(media)
    again = put(handheld, data, "image/jpeg")
    assert again.status_code == 200, again.content
    assert again.json()["sha256"] == sha(data)
    assert Attachment.objects.count() == 1
    assert files_under(media) == stored_before
    # Another device sending the very same photo is the same answer.
    assert put(handheld, data, "image/jpeg").status_code == 200


def test_head_and_resume_after_a_dropped_upload(handheld, media):
    data = jpeg_with_gps()
    address = sha(data)
    missing = head(handheld, address)
    assert missing.status_code == 404 and missing.content == b""
    assert put(handheld, data, "image/jpeg").status_code == 201
    found = head(handheld, address)
    assert found.status_code == 200 and found.content == b""


def test_head_unknown_and_malformed(handheld, media):
    assert head(handheld, "0" * 64).status_code == 404
    assert head(handheld, "not-a-hash").status_code == 404


def test_head_and_put_need_a_device(world, media):
    data = jpeg_with_gps()
    anonymous = Client()
    assert anonymous.head(f"/api/v1/attachments/{sha(data)}").status_code == 401
    response = anonymous.put(f"/api/v1/attachments/{sha(data)}", data=data, content_type="image/jpeg")
    assert_error(response, 401, "not_authenticated")
    assert_nothing_stored(media)


# ---------------------------------------------------------------- refusals


def test_hash_mismatch(handheld, media):
    data = jpeg_with_gps()
    response = put(handheld, data, "image/jpeg", address=sha(data + b"x"))
    assert_error(response, 400, "hash_mismatch")
    assert_nothing_stored(media)


def test_hash_mismatch_on_a_stored_address_is_still_refused(handheld, media):
    data = jpeg_with_gps()
    assert put(handheld, data, "image/jpeg").status_code == 201
    stored_before = files_under(media)
    other = jpeg_with_gps((10, 10))
    assert_error(put(handheld, other, "image/jpeg", address=sha(data)), 400, "hash_mismatch")
    assert Attachment.objects.count() == 1 and files_under(media) == stored_before


def test_oversize_is_413(handheld, media, settings):
    data = jpeg_with_gps()
    settings.SYNC_MAX_ATTACHMENT_BYTES = len(data) - 1
    assert_error(put(handheld, data, "image/jpeg"), 413, "too_large")
    assert_nothing_stored(media)
    settings.SYNC_MAX_ATTACHMENT_BYTES = len(data)
    assert put(handheld, data, "image/jpeg").status_code == 201


@pytest.mark.parametrize(("body", "content_type"), [
    (b"#!/bin/sh\nrm -rf /", "image/png"),
    (b"#!/bin/sh\nrm -rf /", "image/jpeg"),
    (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
     b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;", "image/gif"),
    (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "image/jpeg"),
    (b"", "image/jpeg"),
], ids=["shell-as-png", "shell-as-jpeg", "gif", "pdf", "empty"])
def test_content_that_is_not_an_accepted_image_is_415(handheld, media, body, content_type):
    assert_error(put(handheld, body, content_type), 415, "unsupported_media_type")
    assert_nothing_stored(media)


def test_real_png_labelled_as_jpeg_is_415(handheld, media):
    body = assert_error(put(handheld, png_bytes(), "image/jpeg"), 415, "unsupported_media_type")
    assert "image/png" in body["message"]
    assert_nothing_stored(media)


def test_real_jpeg_without_a_content_type_is_415(handheld, media):
    assert_error(put(handheld, jpeg_with_gps(), ""), 415, "unsupported_media_type")
    assert_nothing_stored(media)


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (10_000, 10_000), (8_000, 8_000)])
def test_huge_declared_size_is_refused_before_decoding(handheld, media, width, height):
    data = png_declaring(width, height)
    assert len(data) < 200
    started = time.monotonic()
    assert_error(put(handheld, data, "image/png"), 413, "image_too_large")
    assert time.monotonic() - started < 2
    assert_nothing_stored(media)


def test_truncated_jpeg_is_a_clean_400(handheld, media):
    data = jpeg_with_gps((256, 192))
    cut = data[: len(data) // 2]
    assert_error(put(handheld, cut, "image/jpeg"), 400, "invalid_image")
    assert_nothing_stored(media)


def test_corrupt_png_is_a_clean_400(handheld, media):
    data = bytearray(png_bytes((64, 64)))
    idat = data.index(b"IDAT")
    data[idat + 6: idat + 12] = b"\xff" * 6  # break the compressed stream (and its CRC)
    assert_error(put(handheld, bytes(data), "image/png"), 400, "invalid_image")
    assert_nothing_stored(media)


@pytest.mark.parametrize("address", [
    "abc", "0" * 63, "0" * 65, "G" * 64, "A" * 64, "0" * 64 + "%0A", "..%5C..%5Cetc%5Cpasswd",
])
def test_bad_sha256_in_path_is_400(handheld, media, address):
    data = jpeg_with_gps()
    if address == "A" * 64:
        address = sha(data).upper()
    assert_error(put(handheld, data, "image/jpeg", address=address), 400, "invalid_hash")
    assert_nothing_stored(media)


# ---------------------------------------------------------------- records before photos (section 6, 7)


def test_record_may_arrive_before_its_photo(handheld, media):
    data = jpeg_with_gps()
    address = sha(data)
    obs = uuid.uuid4()
    result = handheld.push_one(mutation("observation", "create", obs, observation_data(photos=[address])))
    assert result["status"] == "applied", result

    status = handheld.get("/api/v1/sync/status")
    assert status.status_code == 200, status.content
    assert status.json()["missing_attachments"] == [{"type": "observation", "id": str(obs), "sha256": address}]

    assert head(handheld, address).status_code == 404
    assert put(handheld, data, "image/jpeg").status_code == 201
    assert handheld.get("/api/v1/sync/status").json()["missing_attachments"] == []


def test_missing_photos_are_per_device(world, media):
    warden, other = world.enrol("warden"), world.enrol("warden2")
    data = jpeg_with_gps()
    warden.push_one(mutation("observation", "create", uuid.uuid4(), observation_data(photos=[sha(data)])))
    assert len(warden.get("/api/v1/sync/status").json()["missing_attachments"]) == 1
    assert other.get("/api/v1/sync/status").json()["missing_attachments"] == []


# ---------------------------------------------------------------- the same photo twice at once


def test_same_photo_on_two_connections_at_once(tworld, media, caplog):
    """Both requests pass the 'already stored?' check, both write a file; one row wins
    and the loser answers 200 and leaves no orphan file behind. At once, proven: another
    session holds the table in SHARE mode (reads pass, inserts wait) until both uploads are
    seen waiting on it, past their check, each with its file written."""
    import logging

    import psycopg

    from tests.deploy.stack import child_database_url

    handhelds = [tworld.enrol("warden"), tworld.enrol("warden2")]
    data = jpeg_with_gps((1600, 1200))
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def upload(hh):
        try:
            barrier.wait()
            answers.append(put(hh, data, "image/jpeg").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=upload, args=(hh,)) for hh in handhelds]
    # Committed for real, so on_commit queues a thumbnail: keep it off the shared broker.
    with celery_redis(CLOSED_PORT), caplog.at_level(logging.INFO, logger="fieldsync.sync.attachments"), \
            psycopg.connect(child_database_url("proofs-gate")) as gate:
        gate.execute("LOCK TABLE sync_attachment IN SHARE MODE")
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while True:
            with psycopg.connect(child_database_url("proofs-watch"), autocommit=True) as watch:
                waiting = watch.execute(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                    "WHERE l.relation = 'sync_attachment'::regclass AND NOT l.granted "
                    "AND a.wait_event_type = 'Lock'").fetchone()[0]
            if waiting == 2:
                break
            assert time.monotonic() < deadline, f"{waiting} uploads waiting on the table"
            time.sleep(0.02)
        assert len(files_under(media)) == 2, "each upload has written its file before inserting"
        gate.rollback()  # both inserts go ahead: one wins the primary key
        for thread in threads:
            thread.join(60)
    assert [r.getMessage() for r in caplog.records if "concurrent upload" in r.getMessage()] == [
        f"attachment {hashlib.sha256(data).hexdigest()} was stored by a concurrent upload"]
    assert sorted(answers) == [200, 201]
    row = Attachment.objects.get()
    assert files_under(media) == [Path(row.file.path)]


# ---------------------------------------------------------------- memory bound (sync/images.py)


def test_photos_declaring_more_than_the_memory_limit_are_413_in_every_format(handheld, media):
    """Headers of a few hundred bytes declaring tens of megapixels, and a complete
    7000x7000 RGBA PNG of one colour (under a megabyte): refused before decoding."""
    from .test_image_memory import jpeg_declaring, webp_declaring

    out = io.BytesIO()
    Image.new("RGBA", (7000, 7000), (200, 30, 30, 255)).save(out, format="PNG", compress_level=1)
    for data, content_type in ((jpeg_declaring(6000, 6000), "image/jpeg"), (webp_declaring(5000, 5000), "image/webp"),
                               (png_declaring(6000, 6000), "image/png"), (out.getvalue(), "image/png")):
        body = assert_error(put(handheld, data, content_type), 413, "image_too_large")
        assert "MiB" in body["message"]
    assert_nothing_stored(media)


def test_the_memory_limit_is_a_setting(handheld, media, settings):
    """A 640x480 RGB JPEG is priced at 8 bytes a pixel (two pictures while turning it)."""
    data = jpeg_with_gps((640, 480))
    settings.SYNC_MAX_IMAGE_MEMORY_BYTES = 640 * 480 * 8 - 1
    assert_error(put(handheld, data, "image/jpeg"), 413, "image_too_large")
    assert_nothing_stored(media)
    settings.SYNC_MAX_IMAGE_MEMORY_BYTES = 640 * 480 * 8
    assert put(handheld, data, "image/jpeg").status_code == 201


def test_the_pixel_limit_is_a_setting(handheld, media, settings):
    data = png_bytes((100, 50))
    settings.SYNC_MAX_IMAGE_PIXELS = 4999
    body = assert_error(put(handheld, data, "image/png"), 413, "image_too_large")
    assert "4999 pixels" in body["message"]
    settings.SYNC_MAX_IMAGE_PIXELS = 5000
    assert put(handheld, data, "image/png").status_code == 201


@pytest.mark.parametrize("cut", [20, 40, "half"], ids=["in-ihdr", "after-ihdr", "in-idat"])
def test_a_truncated_png_is_a_clean_400(handheld, media, cut):
    """Bytes that begin as a PNG but end early are a broken photo (400), not another type."""
    data = png_bytes((200, 200))
    data = data[: len(data) // 2 if cut == "half" else cut]
    assert_error(put(handheld, data, "image/png"), 400, "invalid_image")
    assert_nothing_stored(media)


def test_a_jpeg_cut_inside_its_header_is_a_clean_400(handheld, media):
    data = jpeg_with_gps()
    assert_error(put(handheld, data[:30], "image/jpeg"), 400, "invalid_image")
    assert_nothing_stored(media)
