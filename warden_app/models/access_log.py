"""The access log required by DPA 2018 Part 3 s.62: who did what to which records, when."""
from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Func, Q


class AccessAction(models.TextChoices):
    COLLECTION = "collection", "Collection"
    ALTERATION = "alteration", "Alteration"
    CONSULTATION = "consultation", "Consultation"
    DISCLOSURE = "disclosure", "Disclosure"
    COMBINATION = "combination", "Combination"
    ERASURE = "erasure", "Erasure"


class CurrentXactId(Func):
    """The writing transaction's id (64-bit, never wraps), as the change feed stamps it."""

    template = "pg_current_xact_id()::text::bigint"
    output_field = models.BigIntegerField()


class AccessLogEntry(models.Model):
    """One act on one or more records. Append-only: the application's database role may
    only INSERT and SELECT it, and set the three chain columns (warden_app/db_roles.py); a
    trigger refuses UPDATE and DELETE whoever connects, but for the one sealing update.
    Erasure rows never hold the erased values.

    Tamper evidence (warden_app/accountability, docs/accountability.md): a sealing step
    puts committed rows on a hash chain in (xid, id) order, setting `seq`, `prev_hash` and
    `hash` once, and records each head (AccessLogSeal, and an anchor outside the
    database); `manage.py verify_access_log` recomputes the chain and holds it to them.
    """

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    action = models.CharField(max_length=14, choices=AccessAction.choices)
    record_type = models.CharField(max_length=40)
    record_ids = ArrayField(models.UUIDField(), default=list)
    device_id = models.UUIDField(null=True, blank=True)
    recipient = models.CharField(max_length=200, blank=True)
    purpose = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    # Set by the database (a trigger overrides whatever an INSERT says): rows are sealed
    # in xid order, below the oldest transaction still running, so none can appear later
    # in front of a sealed one.
    xid = models.BigIntegerField(db_default=CurrentXactId(), editable=False)
    # The hash chain, NULL until sealed; the trigger lets them be set once, from NULL.
    seq = models.BigIntegerField(null=True, blank=True, unique=True, editable=False)
    prev_hash = models.CharField(max_length=64, null=True, blank=True, editable=False)
    hash = models.CharField(max_length=64, null=True, blank=True, editable=False)

    class Meta:
        ordering = ["id"]
        verbose_name = "access log entry"
        verbose_name_plural = "access log"
        permissions = [("read_access_log", "Can read the s.62 access log")]
        constraints = [
            models.CheckConstraint(
                condition=Q(action__in=AccessAction.values), name="access_log_action_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["actor", "at"], name="access_log_actor_at"),
            # What the sealing step walks: unsealed rows only, in chain order.
            models.Index(fields=["xid", "id"], condition=Q(seq__isnull=True), name="access_log_unsealed"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} {self.record_type} ({len(self.record_ids)} records)"


class AccessLogSeal(models.Model):
    """One sealing transaction: the chain head it left (seq, the row at that seq, its hash).

    Append-only like the log (a trigger refuses UPDATE and DELETE; the application's
    database role holds only SELECT and INSERT on it). The same head is written, in the
    same transaction, to an anchor outside the database (warden_app/accountability/anchors.py),
    so `verify_access_log` can hold the chain to heads the database's administrators
    cannot rewrite.
    """

    at = models.DateTimeField(auto_now_add=True, editable=False)
    head_seq = models.BigIntegerField(unique=True, editable=False)
    head_id = models.BigIntegerField(editable=False)  # the AccessLogEntry at head_seq
    head_hash = models.CharField(max_length=64, editable=False)
    rows = models.PositiveIntegerField(editable=False)

    class Meta:
        ordering = ["id"]
        verbose_name = "access log seal"

    def __str__(self) -> str:
        return f"seal {self.pk}: seq {self.head_seq} {self.head_hash[:12]}…"
