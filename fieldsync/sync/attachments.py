"""Photos: content-addressed, checked by content, stored without location metadata."""
from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import SyncError
from .models import Attachment

log = logging.getLogger(__name__)

# What a handheld camera produces; anything else is refused by content, not by label.
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
# A decompression bomb declares a huge size in a small file: refuse before decoding.
MAX_PIXELS = 50_000_000


@dataclass(frozen=True)
class Stored:
    attachment: Attachment
    created: bool


def _sniff(data: bytes, declared_type: str) -> tuple[Image.Image, str]:
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError):
        raise SyncError("unsupported_media_type", "The file is not a JPEG, PNG or WebP image.", status_code=415) from None
    real_type = FORMATS.get(image.format or "")
    if real_type is None:
        raise SyncError("unsupported_media_type", f"{image.format} images are not accepted.", status_code=415)
    if declared_type.split(";")[0].strip().lower() != real_type:
        raise SyncError(
            "unsupported_media_type",
            f"Content-Type says {declared_type or 'nothing'} but the content is {real_type}.",
            status_code=415,
        )
    width, height = image.size
    if width * height > MAX_PIXELS or width < 1 or height < 1:
        raise SyncError("image_too_large", f"The image declares {width}x{height} pixels.", status_code=413)
    return image, real_type


def _without_metadata(image: Image.Image, real_type: str) -> bytes:
    """Re-encode the pixels alone: EXIF (GPS position, device serial), XMP and text
    chunks are dropped, and the EXIF orientation is applied first so the photo still
    looks right."""
    try:
        image.load()
        upright = ImageOps.exif_transpose(image)
    except (OSError, Image.DecompressionBombError, SyntaxError, ValueError):
        raise SyncError("invalid_image", "The image data is corrupt.", status_code=400) from None
    clean = Image.frombytes(upright.mode, upright.size, upright.tobytes())
    if upright.mode == "P" and upright.getpalette():
        clean.putpalette(upright.getpalette())
    fmt = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}[real_type]
    if fmt == "JPEG" and clean.mode not in ("RGB", "L"):
        clean = clean.convert("RGB")
    out = io.BytesIO()
    options = {"quality": 90} if fmt in ("JPEG", "WEBP") else {}
    clean.save(out, format=fmt, **options)
    return out.getvalue()


def attachment_exists(sha256: str) -> bool:
    return Attachment.objects.filter(sha256=sha256).exists()


def attachment_store(*, sha256: str, data: bytes, content_type: str, device) -> Stored:
    """Store a photo under the sha256 of the bytes sent. Idempotent: a second upload of
    the same bytes answers `created=False` and changes nothing."""
    existing = Attachment.objects.filter(sha256=sha256).first()
    if existing:
        return Stored(existing, False)
    if len(data) > settings.SYNC_MAX_ATTACHMENT_BYTES:
        raise SyncError("too_large", "The photo is larger than the limit.", status_code=413)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise SyncError("hash_mismatch", "The content does not match its sha256.", status_code=400)
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    image, real_type = _sniff(data, content_type)
    width, height = image.size
    stripped = _without_metadata(image, real_type)
    try:
        with transaction.atomic():
            attachment = Attachment(
                sha256=sha256, content_type=real_type, size=len(data), width=width, height=height,
                uploaded_by=device,
            )
            attachment.file.save(sha256, ContentFile(stripped), save=False)
            attachment.save(force_insert=True)
            transaction.on_commit(lambda: thumbnail_request(sha256))
    except IntegrityError:
        # The same photo arrived on another connection at the same moment.
        return Stored(Attachment.objects.get(sha256=sha256), False)
    return Stored(attachment, True)


def thumbnail_request(sha256: str) -> None:
    """Queue the thumbnail; with the broker down, the periodic catch-up makes it later."""
    from .tasks import attachment_thumbnail

    try:
        attachment_thumbnail.apply_async(args=[sha256], retry=False)
    except Exception as exc:  # broker unreachable: sync must not fail for a thumbnail
        log.warning("thumbnail for %s not queued: %s", sha256, exc)
