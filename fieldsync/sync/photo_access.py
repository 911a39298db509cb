"""Who may know of a photo, and who may name one in a record.

A photo's sha256 must not work as a key to someone else's evidence. Two rules, generic over
the registered record types (any `photos` field), with visibility asked of each type's
policy (the same `in_device_scope` and `visible_fields` a pull obeys):

- A user may *see* a stored photo (HEAD /api/v1/attachments/<sha> answers 200) when one of
  their devices uploaded it, or a live record naming it is one their handheld may pull with
  its photos: one their own devices pushed, or one in their scope whose photos they may see.
- A user may *name* a photo in a record when they may see it as above, or when it is not
  stored yet and no live record names it (a handheld pushes its records first and uploads
  the photos after: the first record to name an unknown sha claims it). So a sha learnt
  somehow (a log, a screenshot, a colleague's old handheld) attaches nothing: once stored it
  is someone else's; before that it is already named by the record it belongs to.

Uploads are not restricted: whoever sends bytes whose sha256 is S already holds the photo.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fieldsync import db

from . import registry, rows
from .models import Attachment

# Records read per sha and type when deciding who may see it. A photo is named by a handful
# of records (its own, a copy a colleague made); the cap only bounds the work a query can cause.
NAMING_RECORDS_READ = 50


@dataclass(frozen=True)
class PhotoAccess:
    stored: bool
    named: bool  # by some live record, anybody's
    visible: bool  # to this user (see the module docstring)

    @property
    def nameable(self) -> bool:
        return self.visible or (not self.stored and not self.named)


def _photo_types() -> list[tuple[registry.RecordType, list[str]]]:
    found = []
    for rtype in registry.all_types():
        columns = [spec.db_column for spec in rtype.fields if spec.kind == "photos"]
        if columns:
            found.append((rtype, columns))
    return found


def photo_access(user, shas: Iterable[str]) -> dict[str, PhotoAccess]:
    """For each sha: stored, named by a live record, visible to `user`.

    The same statements run whether a photo exists or not (one for the attachments, one
    per record type for the records naming it), so an answer's cost says little about a
    photo the caller may not see."""
    return _access(user, shas, collect=False)[0]


def _access(user, shas: Iterable[str], *, collect: bool) -> tuple[dict[str, PhotoAccess], dict[str, dict[str, set]]]:
    """photo_access, and with `collect` for each sha every record naming it that makes it
    visible to `user` (type name -> record ids): whose reading a GET of the photo is, for
    the access log. Without it a sha already visible asks no policy again (pushes)."""
    wanted = sorted(set(shas))
    granting: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    if not wanted:
        return {}, granting
    shas_param, wanted_set = list(wanted), set(wanted)
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT a.sha256, d.user_id FROM unnest(%s::text[]) AS s(sha) "
            "JOIN sync_attachment a ON a.sha256 = s.sha LEFT JOIN sync_device d ON d.id = a.uploaded_by_id",
            [shas_param],
        )
        uploaded = {sha: uploader for sha, uploader in cursor.fetchall()}
        visible = {sha for sha, uploader in uploaded.items() if uploader is not None and uploader == user.pk}
        named: set[str] = set()
        to_ask: dict[str, dict[object, set[str]]] = defaultdict(dict)  # type -> {record id: shas it names}
        for rtype, columns in _photo_types():
            for column in columns:
                # One index probe per sha (GIN on the column; the LATERAL ... LIMIT leaves the
                # planner no other plan): one `&&` over the whole list was planned as a scan
                # of the table once the list was long (a push of 500: 160 ms on 5,000 rows).
                cursor.execute(
                    f"SELECT r.id, r.{column}, d.user_id FROM unnest(%s::varchar[]) AS s(sha) "
                    f"CROSS JOIN LATERAL (SELECT id, {column}, device_id FROM {rtype.table} "
                    f"WHERE {column} @> ARRAY[s.sha] AND deleted_at IS NULL LIMIT {NAMING_RECORDS_READ}) AS r "
                    "LEFT JOIN sync_device d ON d.id = r.device_id",
                    [shas_param],
                )
                for record_id, photos, pusher in cursor.fetchall():
                    mine = set(photos) & wanted_set
                    named |= mine
                    if pusher == user.pk:
                        visible |= mine  # pushed by one of the user's own devices
                        for sha in mine:
                            granting[sha][rtype.name].add(record_id)
                    elif collect or mine - visible:
                        to_ask[rtype.name].setdefault(record_id, set()).update(mine)
    # The rest: ask each type's policy, as a pull would, of the records naming what is left.
    window_start = timezone.now() - timedelta(days=settings.SYNC_WINDOW_DAYS)
    for type_name, by_record in to_ask.items():
        rtype = registry.get(type_name)
        loaded = rows.load_rows(rtype, list(by_record))
        rtype.policy.enrich(list(loaded.values()))
        for record_id, row in loaded.items():
            if ((collect or by_record[record_id] - visible) and rtype.policy.in_device_scope(user, row, window_start)
                    and _photos_shown(rtype, user, row)):
                visible |= by_record[record_id]
                for sha in by_record[record_id]:
                    granting[sha][type_name].add(record_id)
    result = {sha: PhotoAccess(stored=sha in uploaded, named=sha in named, visible=sha in visible) for sha in wanted}
    return result, granting


def _photos_shown(rtype: registry.RecordType, user, row: registry.Row) -> bool:
    shown = rtype.policy.visible_fields(user, row)
    return any(spec.kind == "photos" and spec.name in shown for spec in rtype.fields)


def photo_visible(user, sha256: str) -> bool:
    """Whether HEAD may say this photo is stored: stored, and visible to `user`."""
    access = photo_access(user, [sha256])[sha256]
    return access.stored and access.visible


def photo_readable(user, sha256: str) -> dict[str, list] | None:
    """For GET /api/v1/attachments/<sha>: None unless the photo is stored and visible to
    `user` (as HEAD); else the records naming it that the user may see (type name -> ids),
    each a consultation of that record when the photo leaves the server."""
    access, granting = _access(user, [sha256], collect=True)
    if not (access[sha256].stored and access[sha256].visible):
        return None
    return {type_name: sorted(ids, key=str) for type_name, ids in granting[sha256].items()}


@dataclass(frozen=True)
class PhotoRead:
    handle: object  # an open binary file
    content_type: str


def photo_read(*, user, device, sha256: str, thumbnail: bool = False) -> PhotoRead | None:
    """A stored photo (or its thumbnail) opened for the device's user, or None (not stored,
    not theirs to see, file gone). A photo of a person is personal
    data: each record naming it whose photos are personal gets its consultation row, in the
    transaction that hands the bytes over (as the desk's photos, thumbnails included)."""
    readers = photo_readable(user, sha256)
    if readers is None:
        return None
    attachment = Attachment.objects.filter(sha256=sha256).first()
    if attachment is None:
        return None
    # Until the thumbnail task has run, the photo itself (as the desk does).
    thumbnail = thumbnail and bool(attachment.thumbnail)
    stored = attachment.thumbnail if thumbnail else attachment.file
    with transaction.atomic():
        try:
            handle = stored.open("rb")
        except FileNotFoundError:
            return None
        for type_name, ids in readers.items():
            rtype = registry.get(type_name)
            if any(spec.kind == "photos" and spec.name in rtype.policy.personal_fields for spec in rtype.fields):
                rtype.policy.record_consulted(user=user, device=device, record_ids=ids,
                                              purpose="photo thumbnail to the user's handheld" if thumbnail
                                              else "photo to the user's handheld")
    # The intake stores only JPEG, PNG or WebP (attachments.py) and thumbnails are JPEG.
    return PhotoRead(handle, "image/jpeg" if thumbnail else attachment.content_type)
