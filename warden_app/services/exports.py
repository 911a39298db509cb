"""Exports built in the background: requested, built by Celery into a file, fetched, expired."""
from __future__ import annotations

import logging
import os
import tempfile
from datetime import timedelta

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from fieldsync.errors import ApiError, invalid

from .. import permissions
from ..models import Export, User
from .access_log import access_log_repeat

log = logging.getLogger(__name__)
FORMAT_NAMES = ", ".join(Export.Format.values)


def export_request(*, user: User, record_type: str, fmt: str, params: dict) -> Export:
    """Record the request and queue its building (after commit). The filter is validated
    now, so a bad request fails here and not in the worker. 503 when the queue is down."""
    from ..analysis.export_files import XLSX_MAX_RECORDS
    from ..analysis.filters import record_filter_parse
    from ..analysis.selectors import records_query
    from ..tasks import export_build_task

    if fmt not in Export.Format.values:
        raise invalid("format", "not_in_choices", FORMAT_NAMES)
    flt = record_filter_parse(record_type, params)
    # Said now rather than after the worker has read a million rows.
    if fmt == Export.Format.XLSX and permissions.can_read_records(user) and \
            records_query(user, record_type, flt).count_up_to(XLSX_MAX_RECORDS + 1) > XLSX_MAX_RECORDS:
        raise invalid("format", "too_many_records", f"An Excel sheet holds at most {XLSX_MAX_RECORDS:,} "
                      "records: narrow the filter, or choose CSV or GeoPackage.")
    with transaction.atomic():
        export = Export.objects.create(owner=user, record_type=record_type, format=fmt, query=flt.as_params())
    try:
        export_build_task.apply_async(args=[str(export.pk)], retry=False)
    except Exception as exc:  # broker unreachable: say so now rather than leave it queued for ever
        log.warning("export %s not queued: %s", export.pk, exc)
        Export.objects.filter(pk=export.pk).update(
            status=Export.Status.FAILED, error="the export queue is unavailable", finished_at=timezone.now()
        )
        raise ApiError("busy", "Exports cannot be queued just now; try again shortly.", status_code=503,
                       headers={"Retry-After": "30"}) from exc
    return export


def export_build(*, export_id) -> Export:
    """Build the file: the same stream as a GeoJSON/CSV response (its disclosure row is
    committed before the first row is read), written as the export's format into a
    temporary file, then into storage."""
    from ..analysis.export_files import TooManyRows, export_file_write
    from ..analysis.filters import record_filter_parse
    from ..analysis.selectors import read_basis, records_query
    from ..analysis.streams import ReadLog, RecordStream

    with transaction.atomic():
        export = Export.objects.select_for_update().select_related("owner").get(pk=export_id)
        if export.status != Export.Status.QUEUED:
            return export  # a redelivered task: built (or being built) already
        export.status, export.started_at = Export.Status.RUNNING, timezone.now()
        export.save(update_fields=["status", "started_at"])
    owner = export.owner
    try:
        if not permissions.can_read_records(owner):
            raise PermissionError("the owner may no longer read records")
        query = records_query(owner, export.record_type, record_filter_parse(export.record_type, export.query))
        purpose, details = read_basis(owner, query)
        details |= {"view": "api.exports.build", "export": str(export.pk), "format": export.format,
                    "filter": query.filter.describe()}
        # A path rather than an open file: SQLite (GeoPackage) opens the file itself.
        with tempfile.NamedTemporaryFile(prefix="fieldsync-export-", suffix=f".{export.format}", delete=False) as tmp:
            pass
        try:
            stream = RecordStream(
                query,
                log=ReadLog("disclosure", recipient=f"{owner.get_username()} (export file)", purpose=purpose,
                            details=details),
            ).open()
            try:
                export_file_write(export.format, query, stream, tmp.name, title=_title(export),
                                  description=_description(export, query.filter.describe()))
            finally:
                stream.close()
            size = os.path.getsize(tmp.name)
            with open(tmp.name, "rb") as handle:
                name = default_storage.save(f"exports/{owner.pk}/{export.pk}.{export.format}", File(handle))
        finally:
            os.unlink(tmp.name)
    except Exception as exc:
        log.exception("export %s failed", export.pk)
        Export.objects.filter(pk=export.pk).update(
            status=Export.Status.FAILED, error=_failure(exc, TooManyRows), finished_at=timezone.now()
        )
        raise
    now = timezone.now()
    Export.objects.filter(pk=export.pk).update(
        status=Export.Status.READY, file_name=name, row_count=stream.row_count, size_bytes=size,
        finished_at=now, expires_at=now + timedelta(hours=settings.EXPORT_RETENTION_HOURS),
        access_log_entry_id=stream.log_entry_id,
    )
    export.refresh_from_db()
    return export


def export_download(*, user: User, export: Export):
    """The ready file of the user's own export, opened; each download is logged as a
    disclosure naming the same records as the building did (in one transaction, before
    the file is returned)."""
    if export.owner_id != user.pk:
        raise ApiError("not_found", "No such export.", status_code=404)
    if export.status == Export.Status.EXPIRED:
        raise ApiError("gone", "The export file has been deleted; request it again.", status_code=410)
    if export.status != Export.Status.READY:
        raise ApiError("not_ready", f"The export is {export.status}.", status_code=409)
    if not permissions.can_read_records(user):
        raise ApiError("permission_denied", "You may no longer read records.", status_code=403)
    with transaction.atomic():
        if export.access_log_entry_id is not None:
            access_log_repeat(
                entry_id=export.access_log_entry_id, user=user, action="disclosure",
                recipient=f"{user.get_username()} (export download)",
                purpose=_purpose_of(export),
                details={"view": "api.exports.file", "export": str(export.pk)},
            )
        return default_storage.open(export.file_name, "rb")


def _title(export: Export) -> str:
    return f"{export.get_record_type_display()} ({export.created_at:%Y-%m-%d %H:%M} UTC)"


def _description(export: Export, described: dict) -> str:
    filters = "; ".join(f"{k}={v}" for k, v in described.items()) or "no filter"
    return f"fieldsync export {export.pk} by {export.owner.get_username()}: {filters}"


def _failure(exc: Exception, too_many_rows: type) -> str:
    """What the exports page says about a failed build (the log has the traceback)."""
    if isinstance(exc, too_many_rows):
        return f"{str(exc).capitalize()}: narrow the filter, or choose CSV or GeoPackage."
    if isinstance(exc, PermissionError):
        return "You may no longer read records."
    return f"The file could not be built ({type(exc).__name__}); request it again."


def _purpose_of(export: Export) -> str:
    entry = export.access_log_entry
    return entry.purpose if entry else ""


def exports_expire(*, now=None) -> int:
    """Delete the files of exports past their expiry (they hold personal data)."""
    now = now or timezone.now()
    expired = 0
    for export in Export.objects.filter(status=Export.Status.READY, expires_at__lte=now):
        if export.file_name:
            default_storage.delete(export.file_name)
        Export.objects.filter(pk=export.pk).update(status=Export.Status.EXPIRED)
        expired += 1
    return expired
