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


def _without_metadata(image: Image.Image, real_type: str) -> tuple[bytes, tuple[int, int]]:
    """Re-encode the pixels alone: EXIF (GPS position, device serial), XMP, ICC and text
    chunks are dropped, and the EXIF orientation is applied first so the photo still
    looks right. Returns the new bytes and the (upright) pixel size."""
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
    stripped, (width, height) = _without_metadata(image, real_type)
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
