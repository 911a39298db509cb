"""Photos: content-addressed, checked by content, stored without location metadata."""
from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from PIL import Image, ImageOps

from fieldsync.errors import ApiError

from .images import DECODE_ERRORS, DECODERS, image_open
from .models import Attachment

log = logging.getLogger(__name__)

# What a handheld camera produces; anything else is refused by content, not by label.
# Pillow calls a camera JPEG carrying extra frames (depth map, preview: common on phones)
# "MPO"; it is a JPEG, and only its first picture is kept.
FORMATS = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
ENCODERS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
# Labels some cameras and HTTP stacks use for the same types.
TYPE_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}
_ORIENTATION = 0x0112  # EXIF tag: how to turn the pixels to view them


@dataclass(frozen=True)
class Stored:
    attachment: Attachment
    created: bool


@dataclass(frozen=True)
class Cleaned:
    """A photo ready to store: its bytes without metadata, real type and pixel size."""

    data: bytes
    content_type: str
    size: tuple[int, int]


def _sniff(data: bytes, declared_type: str) -> Image.Image:
    """Open the header only (no pixels decoded yet), and check the real type and the
    declared size against the memory decoding it would take (images.image_open). Only the
    three accepted decoders are ever tried."""
    image = image_open(data)
    real_type = FORMATS.get(image.format or "")
    if real_type is None:
        raise ApiError("unsupported_media_type", f"{image.format} images are not accepted.", status_code=415)
    declared = declared_type.split(";")[0].strip().lower()
    if TYPE_ALIASES.get(declared, declared) != real_type:
        raise ApiError(
            "unsupported_media_type",
            f"Content-Type says {declared or 'nothing'} but the content is {real_type}.",
            status_code=415,
        )
    return image


# JPEG segments a stored photo keeps: only those a decoder needs to draw the picture
# (frame headers, Huffman and quantisation tables, arithmetic-coding conditions, restart
# interval, scans). Everything else goes: the application segments (EXIF with its GPS
# position and serial numbers, XMP, ICC, IPTC, a multi-picture file's index), comments,
# and segments a decoder skips unread (DNL, EXP), where anything could ride along.
# Adobe's APP14 says how to read the colours: it is rewritten with that alone.
_SOS, _EOI, _APP14 = 0xDA, 0xD9, 0xEE
_RST0, _RST7 = 0xD0, 0xD7
_PICTURE = frozenset({*range(0xC0, 0xD0), 0xDB, 0xDD}) - {0xC8}  # SOFn, DHT, DAC, DQT, DRI


def _jpeg_segments_only(data: bytes) -> bytes | None:
    """The first picture of a JPEG with its application segments and comments left out,
    every other byte as it was (so the pixels are the camera's, not a re-encoding's);
    anything after the picture's end (the extra pictures of a phone's multi-picture file,
    or a trailer) goes too. None when the file is not laid out as a JPEG should be."""
    if data[:2] != b"\xff\xd8":
        return None
    kept = [b"\xff\xd8"]
    i, n = 2, len(data)
    while i < n:
        if data[i] != 0xFF:
            return None
        while i < n and data[i] == 0xFF:  # fill bytes before a marker
            i += 1
        if i >= n:
            return None
        marker = data[i]
        i += 1
        if marker == _EOI:
            kept.append(b"\xff\xd9")
            return b"".join(kept)
        if _RST0 <= marker <= _RST7 or marker in (0x00, 0x01, 0xD8):
            return None  # not where a segment may start
        if i + 2 > n:
            return None
        length = int.from_bytes(data[i:i + 2], "big")
        end = i + length
        if length < 2 or end > n:
            return None
        if marker in _PICTURE or marker == _SOS:
            kept.append(bytes((0xFF, marker)) + data[i:end])
        elif marker == _APP14 and length >= 14 and data[i + 2:i + 7] == b"Adobe":
            # Version 100, no flags, and the colour transform as the file gave it.
            kept.append(b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00" + data[i + 13:i + 14])
        i = end
        if marker == _SOS:
            # Entropy-coded data runs to the next marker: an FF not followed by a stuffed
            # 00, a restart marker or another fill FF.
            j = i
            while True:
                j = data.find(b"\xff", j)
                if j < 0 or j + 1 >= n:
                    return None
                follower = data[j + 1]
                if follower == 0x00 or _RST0 <= follower <= _RST7:
                    j += 2
                elif follower == 0xFF:
                    j += 1
                else:
                    break
            kept.append(data[i:j])
            i = j
    return None


def _upright(image: Image.Image) -> bool:
    """Whether a JPEG's EXIF (read from its header: no pixels are decoded) leaves it as
    stored. A broken EXIF says no: the re-encoding path reads it again, and refuses it."""
    try:
        return image.getexif().get(_ORIENTATION, 1) == 1
    except DECODE_ERRORS:
        return False


def _invalid() -> ApiError:
    return ApiError("invalid_image", "The image data is corrupt or truncated.", status_code=400)


def photo_clean(data: bytes, declared_type: str) -> Cleaned:
    """The photo without EXIF (GPS position, device serial), XMP, ICC or text chunks, and
    upright; refused (ApiError) if it is not an accepted image, declares more pixels than
    decoding may take memory for, or cannot be decoded in full.

    A JPEG needing no rotation keeps its own bytes, segments of metadata left out: no
    second lossy encoding of evidence, and a fifth of the work. The result is decoded in
    full all the same, so what is stored is a whole, readable picture. Anything else (a
    JPEG whose EXIF says to rotate it, PNG, WebP) is decoded, turned upright and
    re-encoded from its pixels alone.

    Memory: at most two full pictures are alive at once (images.decode_cost prices that),
    so the sniffed header is never the object decoded: its caller would keep the pixels
    alive through every later step."""
    header = _sniff(data, declared_type)
    real_type = FORMATS[header.format]
    if real_type == "image/jpeg" and _upright(header):
        segments = _jpeg_segments_only(data)
        if segments is not None:
            try:
                stored = Image.open(io.BytesIO(segments), formats=["JPEG"])
                stored.load()
            except DECODE_ERRORS:
                raise _invalid() from None
            if stored.size == header.size:
                return Cleaned(segments, real_type, stored.size)
            del stored
    fmt = ENCODERS[real_type]
    try:
        picture = Image.open(io.BytesIO(data), formats=DECODERS)
        del header
        picture.load()
        ImageOps.exif_transpose(picture, in_place=True)  # a second picture only while turning
        if fmt == "JPEG" and picture.mode not in ("RGB", "L"):
            picture = picture.convert("RGB")
        # A fresh picture holding the pixels alone: nothing of the file's metadata can ride along.
        clean = Image.new(picture.mode, picture.size)
        clean.paste(picture)
        if picture.mode in ("P", "PA") and picture.getpalette():
            clean.putpalette(picture.getpalette())
        # Transparency is part of the picture, not metadata: keep it.
        transparency = picture.info.get("transparency")
        picture.close()  # frees the decoder's own buffers too (WebP keeps its canvas until then)
        del picture
    except DECODE_ERRORS:
        raise _invalid() from None
    options: dict = {}
    if transparency is not None and fmt == "PNG" and clean.mode in ("P", "L", "RGB", "1"):
        options["transparency"] = transparency
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = 90
    out = io.BytesIO()
    clean.save(out, format=fmt, **options)
    return Cleaned(out.getvalue(), real_type, clean.size)


def attachment_store(*, sha256: str, data: bytes, content_type: str, device) -> Stored:
    """Store a photo under the sha256 of the bytes sent. Idempotent: a second upload of
    the same bytes answers `created=False` and changes nothing. A refused upload leaves
    neither a row nor a file behind."""
    if len(data) > settings.SYNC_MAX_ATTACHMENT_BYTES:
        raise ApiError("too_large", "The photo is larger than the limit.", status_code=413)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ApiError("hash_mismatch", "The content does not match its sha256.", status_code=400,
                       fields={"sha256": [{"code": "hash_mismatch",
                                            "message": "sha256 of the body differs from the address"}]})
    existing = Attachment.objects.filter(sha256=sha256).first()
    if existing:
        return Stored(existing, False)
    cleaned = photo_clean(data, content_type)
    width, height = cleaned.size
    attachment = Attachment(
        sha256=sha256, content_type=cleaned.content_type, size=len(data), width=width, height=height,
        uploaded_by=device,
    )
    try:
        with transaction.atomic():
            attachment.file.save(sha256, ContentFile(cleaned.data), save=False)
            attachment.save(force_insert=True)
            transaction.on_commit(lambda: thumbnail_request(sha256))
    except BaseException as exc:
        # The row did not commit: remove the file written for it (the storage never
        # reuses a name, so this is never the file of a row that did commit).
        if attachment.file.name:
            attachment.file.storage.delete(attachment.file.name)
        if isinstance(exc, IntegrityError):
            # The same photo arrived on another connection at the same moment.
            log.info("attachment %s was stored by a concurrent upload", sha256)
            winner = Attachment.objects.filter(sha256=sha256).first()
            if winner is not None:
                return Stored(winner, False)
        raise
    return Stored(attachment, True)


def thumbnail_request(sha256: str) -> None:
    """Queue the thumbnail; with the broker down, the periodic catch-up makes it later."""
    from .tasks import attachment_thumbnail

    try:
        attachment_thumbnail.apply_async(args=[sha256], retry=False)
    except Exception as exc:  # broker unreachable: sync must not fail for a thumbnail
        log.warning("thumbnail for %s not queued: %s", sha256, exc)
