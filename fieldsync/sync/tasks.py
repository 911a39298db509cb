"""Celery tasks of the sync engine: thumbnails, made after the photo is stored."""
from __future__ import annotations

import io

from celery import shared_task
from django.core.files.base import ContentFile
from PIL import Image

from .models import Attachment

THUMBNAIL_SIZE = (320, 320)


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def attachment_thumbnail(sha256: str) -> bool:
    attachment = Attachment.objects.filter(sha256=sha256).first()
    if attachment is None or attachment.thumbnail:
        return False
    with attachment.file.open("rb") as fh:
        image = Image.open(fh)
        image.thumbnail(THUMBNAIL_SIZE)
        out = io.BytesIO()
        image.convert("RGB").save(out, format="JPEG", quality=80)
    attachment.thumbnail.save(f"{sha256}.jpg", ContentFile(out.getvalue()), save=False)
    Attachment.objects.filter(sha256=sha256, thumbnail="").update(thumbnail=attachment.thumbnail.name)
    return True


@shared_task
def thumbnails_catch_up(limit: int = 500) -> int:
    """Make thumbnails that were never queued (the broker was down when photos arrived)."""
    made = 0
    for sha256 in Attachment.objects.filter(thumbnail="").values_list("sha256", flat=True)[:limit]:
        made += bool(attachment_thumbnail(sha256))
    return made
