"""Photos: content-addressed, checked by content, stored without location metadata."""
from __future__ import annotations

import hashlib
import io
import logging
import struct
import zlib
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import SyncError
from .models import Attachment

log = logging.getLogger(__name__)

# What a handheld camera produces; anything else is refused by content, not by label.
# Pillow calls a camera JPEG carrying extra frames (depth map, preview: common on phones)
# "MPO"; it is a JPEG, and only its first picture is kept.
FORMATS = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
DECODERS = ["JPEG", "PNG", "WEBP"]  # the only Pillow plugins ever tried on an upload
ENCODERS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
# Labels some cameras and HTTP stacks use for the same types.
TYPE_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}
_ORIENTATION = 0x0112  # EXIF tag: how to turn the pixels to view them
# A decompression bomb declares a huge size in a small file: refuse before decoding.
MAX_PIXELS = 50_000_000
# What a broken or hostile file can make Pillow's decoders raise; all of it is the
# client's fault (400), never a server error.
DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError,
    struct.error, zlib.error, Image.DecompressionBombError,
)


@dataclass(frozen=True)
class Stored:
    attachment: Attachment
    created: bool


def _too_large(width: int, height: int) -> SyncError:
    return SyncError("image_too_large", f"The image declares {width}x{height} pixels; at most "
                     f"{MAX_PIXELS} pixels are accepted.", status_code=413)


def _sniff(data: bytes, declared_type: str) -> Image.Image:
    """Open the header only (no pixels decoded yet), and check the real type and the
    declared size. Only the three accepted decoders are ever tried."""
    try:
        image = Image.open(io.BytesIO(data), formats=DECODERS)
    except Image.DecompressionBombError:
        # Pillow's own guard (far above ours) fired while reading the header.
        raise SyncError("image_too_large", "The image declares an enormous size.", status_code=413) from None
    except (UnidentifiedImageError, *DECODE_ERRORS):
        raise SyncError("unsupported_media_type", "The file is not a JPEG, PNG or WebP image.",
                        status_code=415) from None
    real_type = FORMATS.get(image.format or "")
    if real_type is None:
        raise SyncError("unsupported_media_type", f"{image.format} images are not accepted.", status_code=415)
    declared = declared_type.split(";")[0].strip().lower()
    if TYPE_ALIASES.get(declared, declared) != real_type:
        raise SyncError(
            "unsupported_media_type",
            f"Content-Type says {declared or 'nothing'} but the content is {real_type}.",
            status_code=415,
        )
    width, height = image.size
    if width < 1 or height < 1:
        raise SyncError("invalid_image", f"The image declares {width}x{height} pixels.", status_code=400)
    if width * height > MAX_PIXELS:
        raise _too_large(width, height)
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


def _without_metadata(image: Image.Image, data: bytes, real_type: str) -> tuple[bytes, tuple[int, int]]:
    """The photo without EXIF (GPS position, device serial), XMP, ICC or text chunks, and
    upright. Returns the bytes to store and their pixel size.

    A JPEG needing no rotation keeps its own bytes, segments of metadata left out: no
    second lossy encoding of evidence, and a fifth of the work. The result is decoded in
    full all the same, so what is stored is a whole, readable picture. Anything else (a
    JPEG whose EXIF says to rotate it, PNG, WebP) is decoded, turned upright and
    re-encoded from its pixels alone."""
    if real_type == "image/jpeg" and _upright(image):
        segments = _jpeg_segments_only(data)
        if segments is not None:
            try:
                stored = Image.open(io.BytesIO(segments), formats=["JPEG"])
                stored.load()
            except DECODE_ERRORS:
                raise SyncError("invalid_image", "The image data is corrupt or truncated.",
                                status_code=400) from None
            if stored.size == image.size:
                return segments, stored.size
    fmt = ENCODERS[real_type]
    try:
        image.load()
        upright = ImageOps.exif_transpose(image)
        clean = Image.frombytes(upright.mode, upright.size, upright.tobytes())
        if upright.mode in ("P", "PA") and upright.getpalette():
            clean.putpalette(upright.getpalette())
    except DECODE_ERRORS:
        raise SyncError("invalid_image", "The image data is corrupt or truncated.", status_code=400) from None
    options: dict = {}
    # Transparency is part of the picture, not metadata: keep it.
    if "transparency" in upright.info and fmt == "PNG" and clean.mode in ("P", "L", "RGB", "1"):
        options["transparency"] = upright.info["transparency"]
    if fmt == "JPEG" and clean.mode not in ("RGB", "L"):
        clean = clean.convert("RGB")
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = 90
    out = io.BytesIO()
    clean.save(out, format=fmt, **options)
    return out.getvalue(), clean.size


def attachment_exists(sha256: str) -> bool:
    return Attachment.objects.filter(sha256=sha256).exists()


def attachment_store(*, sha256: str, data: bytes, content_type: str, device) -> Stored:
    """Store a photo under the sha256 of the bytes sent. Idempotent: a second upload of
    the same bytes answers `created=False` and changes nothing. A refused upload leaves
    neither a row nor a file behind."""
    if len(data) > settings.SYNC_MAX_ATTACHMENT_BYTES:
        raise SyncError("too_large", "The photo is larger than the limit.", status_code=413)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise SyncError("hash_mismatch", "The content does not match its sha256.", status_code=400,
                        fields={"sha256": [{"code": "hash_mismatch",
                                            "message": "sha256 of the body differs from the address"}]})
    existing = Attachment.objects.filter(sha256=sha256).first()
    if existing:
        return Stored(existing, False)
    image = _sniff(data, content_type)
    real_type = FORMATS[image.format]
    stripped, (width, height) = _without_metadata(image, data, real_type)
    attachment = Attachment(
        sha256=sha256, content_type=real_type, size=len(data), width=width, height=height,
        uploaded_by=device,
    )
    try:
        with transaction.atomic():
            attachment.file.save(sha256, ContentFile(stripped), save=False)
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
