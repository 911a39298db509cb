"""The engine's own tables: devices, receipts, versions, the change feed, conflicts,
quarantine and attachments."""
import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q


class Device(models.Model):
    """An enrolled handheld. Only a hash of its bearer token is kept."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="devices")
    label = models.CharField(max_length=120)
    platform = models.CharField(max_length=120, blank=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    enrolled_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    last_push_at = models.DateTimeField(null=True, blank=True)
    last_pull_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-enrolled_at"]

    def __str__(self) -> str:
        return f"{self.label} ({self.user})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class MutationStatus(models.TextChoices):
    APPLIED = "applied"
    MERGED = "merged"
    CONFLICT = "conflict"
    REJECTED = "rejected"


class Receipt(models.Model):
    """One row per processed mutation: what makes every resend answer `duplicate`.

    Keyed by the user as well as the mutation id, so a re-enrolled handheld that re-sends
    its outbox under a new device id is still recognised.
    """

    # Receipts and versions are ledgers the engine appends to in bulk, for the device it
    # has just authenticated and touched in the same transaction (so both rows exist and
    # are locked until commit). A per-row foreign-key check and index on these columns
    # cost a push of 500 a tenth of its time and protect nothing more; the ORM still
    # enforces PROTECT / SET_NULL on the rare delete of a user or device.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    device = models.ForeignKey(
        Device, on_delete=models.PROTECT, related_name="receipts", db_constraint=False, db_index=False
    )
    mutation_id = models.UUIDField()
    record_type = models.CharField(max_length=40)
    record_id = models.UUIDField()
    op = models.CharField(max_length=10)
    payload_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=MutationStatus.choices)
    result = models.JSONField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "mutation_id"], name="receipt_once_per_mutation"),
        ]
        indexes = [
            models.Index(fields=["record_type", "record_id"], name="receipt_record"),
            # "Was this record's creation rejected?", asked for every id a push names that
            # does not exist (depends_on_rejected). Rejections are rare, so this index stays
            # tiny, costs creates nothing, and the answer never walks a user's history.
            models.Index(
                fields=["user", "record_id"], name="receipt_rejected_create",
                condition=models.Q(op="create", status="rejected"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.mutation_id}: {self.status}"


class RecordVersion(models.Model):
    """Each version of each record, with the fields that changed in it: the merge's memory."""

    record_type = models.CharField(max_length=40)
    record_id = models.UUIDField()
    version = models.PositiveIntegerField()
    changed_fields = ArrayField(models.CharField(max_length=60))
    data = models.JSONField()
    # Empty for changes the system makes on its own (retention).
    # No database foreign key or index on user/device: see Receipt.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        db_constraint=False, db_index=False,
    )
    device = models.ForeignKey(
        Device, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_constraint=False,
        db_index=False,
    )
    mutation_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["record_type", "record_id", "version"]
        constraints = [
            models.UniqueConstraint(
                fields=["record_type", "record_id", "version"], name="record_version_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.record_type} {self.record_id} v{self.version}"


class Change(models.Model):
    """The change feed: the latest change of each record on each scope key.

    A row is rewritten in place with a fresh (xid, seq) whenever its record changes, so
    the feed holds one row per record and key, and a pull walks only what changed.
    `xid` is the writing transaction's id: readers stop below the oldest transaction
    still running, so a change that committed late is never skipped (docs/sync.md).
    """

    record_type = models.CharField(max_length=40)
    record_id = models.UUIDField()
    scope_key = models.CharField(max_length=80)
    xid = models.BigIntegerField()
    seq = models.BigIntegerField()
    changed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["record_type", "record_id", "scope_key"], name="change_one_row_per_key"
            ),
        ]
        indexes = [
            models.Index(fields=["scope_key", "xid", "seq"], name="change_key_position"),
            # xid included: a first sync finds where a windowed key starts (the oldest writer of
            # a row in the window) from the index alone.
            models.Index(fields=["scope_key", "changed_at"], include=["xid"], name="change_key_time"),
        ]

    def __str__(self) -> str:
        return f"{self.record_type} {self.record_id} on {self.scope_key}"


class Conflict(models.Model):
    """A device's values that could not be applied, kept for a supervisor to resolve."""

    class Reason(models.TextChoices):
        FIELDS = "fields", "Same fields changed on the server"
        LOCATION = "location", "Both sides moved the location"
        REVIEW_LOCKED = "review_locked", "Record approved (locked by review)"
        DELETED = "deleted", "Record deleted on the server"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    record_type = models.CharField(max_length=40)
    record_id = models.UUIDField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="conflicts")
    mutation_id = models.UUIDField()
    reason = models.CharField(max_length=20, choices=Reason.choices)
    base_version = models.PositiveIntegerField(null=True)
    server_version = models.PositiveIntegerField()
    # {field: {"device": value, "server": value}} for every field not applied.
    fields = models.JSONField()
    created_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    resolution = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["record_type", "record_id"], name="conflict_record"),
            models.Index(
                fields=["device"], condition=Q(resolved_at__isnull=True), name="conflict_open_by_device"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.record_type} {self.record_id}: {self.reason}"


class QuarantinedMutation(models.Model):
    """A rejected mutation, kept whole with its reasons: nothing is dropped silently."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="quarantine")
    mutation_id = models.CharField(max_length=64, blank=True)
    record_type = models.CharField(max_length=40, blank=True)
    record_id = models.CharField(max_length=64, blank=True)
    op = models.CharField(max_length=20, blank=True)
    code = models.CharField(max_length=40)
    errors = models.JSONField()
    payload = models.JSONField()
    created_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    resolution_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["device"], condition=Q(resolved_at__isnull=True), name="quarantine_open_by_device"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.mutation_id}: {self.code}"


def attachment_path(instance: "Attachment", filename: str) -> str:
    return f"attachments/{instance.sha256[:2]}/{instance.sha256}"


def thumbnail_path(instance: "Attachment", filename: str) -> str:
    return f"thumbnails/{instance.sha256[:2]}/{instance.sha256}.jpg"


class Attachment(models.Model):
    """A photo, addressed by the sha256 of the bytes the device sent."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    content_type = models.CharField(max_length=60)
    size = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField(null=True)
    height = models.PositiveIntegerField(null=True)
    file = models.FileField(upload_to=attachment_path, max_length=200)
    thumbnail = models.FileField(upload_to=thumbnail_path, max_length=200, blank=True)
    uploaded_by = models.ForeignKey(Device, on_delete=models.SET_NULL, null=True, related_name="+")
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(sha256__regex=r"^[0-9a-f]{64}$"), name="attachment_sha256_hex"
            ),
        ]

    def __str__(self) -> str:
        return self.sha256

