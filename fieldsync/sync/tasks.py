"""Celery tasks of the sync engine: thumbnails, made after the photo is stored."""
from __future__ import annotations

import io
import logging

from celery import shared_task
from django.core.files.base import ContentFile
from PIL import Image

from fieldsync.errors import ApiError

from .images import image_open
from .models import Attachment

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = (320, 320)


def _thumbnail_bytes(attachment: Attachment) -> bytes:
    with attachment.file.open("rb") as fh:
        # The upload's own guard: a stored photo is decoded within the same memory bound
        # (what attachment_store writes passed it, but the limit may have been lowered since,
        # or the file come from elsewhere).
        image = image_open(fh)
        image.thumbnail(THUMBNAIL_SIZE)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            # Transparent areas on white, not on whatever colour the hidden pixels have.
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, "white")
            image.paste(rgba, mask=rgba.getchannel("A"))
        out = io.BytesIO()
        image.convert("RGB").save(out, format="JPEG", quality=80)
    return out.getvalue()


# No result is kept (nobody reads it): with a result backend, publishing subscribes to
# the result store first, and with Redis down that retried for ~20 s inside the upload.
@shared_task(acks_late=True, ignore_result=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def attachment_thumbnail(sha256: str) -> bool:
    attachment = Attachment.objects.filter(sha256=sha256).first()
    if attachment is None or attachment.thumbnail:
        return False
    try:
        data = _thumbnail_bytes(attachment)
    except ApiError as exc:
        # Refused before decoding, or undecodable: no retry would change that.
        log.warning("no thumbnail for %s: %s", sha256, exc.message)
        return False
    attachment.thumbnail.save(f"{sha256}.jpg", ContentFile(data), save=False)
    ours = attachment.thumbnail.name
    updated = Attachment.objects.filter(sha256=sha256, thumbnail="").update(thumbnail=ours)
    if not updated:
        # Made twice (queued task and catch-up at once): keep the one the row names.
        kept = Attachment.objects.filter(sha256=sha256).values_list("thumbnail", flat=True).first()
        if kept != ours:
            attachment.thumbnail.storage.delete(ours)
        return False
    return True


@shared_task(ignore_result=True)
def thumbnails_catch_up(limit: int = 500) -> int:
    """Make thumbnails that were never queued (the broker was down when photos arrived).
    One broken photo is logged and skipped; it never stops the others."""
    made = 0
    pending = (Attachment.objects.filter(thumbnail="").order_by("uploaded_at")
               .values_list("sha256", flat=True)[:limit])
    for sha256 in pending:
        try:
            made += bool(attachment_thumbnail(sha256))
        except Exception:
            log.exception("thumbnail for %s failed", sha256)
    return made
