"""Export files built in the background (Celery) and fetched by their owner when ready."""
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from .sharing import RECORD_TYPES


class Export(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired (file deleted)"

    class Format(models.TextChoices):
        GEOJSON = "geojson", "GeoJSON"
        CSV = "csv", "CSV"
        # Files only (never streamed): a spreadsheet, and a GeoPackage in EPSG:27700.
        XLSX = "xlsx", "Excel (XLSX)"
        GPKG = "gpkg", "GeoPackage"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="exports")
    record_type = models.CharField(max_length=40, choices=RECORD_TYPES)
    format = models.CharField(max_length=10, choices=Format.choices)
    # The validated filter, as analysis.filters.RecordFilter.as_params() gives it.
    query = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The file holds personal data: it is deleted at this time (exports_expire).
    expires_at = models.DateTimeField(null=True, blank=True)
    file_name = models.CharField(max_length=300, blank=True)
    row_count = models.PositiveBigIntegerField(null=True, blank=True)
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    # The s.62 disclosure row of building the file (none when it holds no personal data);
    # each download repeats it.
    access_log_entry = models.ForeignKey(
        "warden_app.AccessLogEntry", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "ready", "failed", "expired"]),
                name="export_status_valid",
            ),
            models.CheckConstraint(condition=Q(format__in=["geojson", "csv", "xlsx", "gpkg"]),
                                  name="export_format_valid"),
            models.CheckConstraint(
                condition=~Q(status="ready") | ~Q(file_name=""), name="export_ready_has_file"
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="export_status_expires")]

    def __str__(self) -> str:
        return f"{self.record_type} {self.format} export {self.id} ({self.status})"
