"""Escalation of a record to a partner's own system (the force's incident recording, the
council's case system) through a configured endpoint (docs/escalation.md)."""
import uuid

from django.conf import settings
from django.core.validators import URLValidator
from django.db import models
from django.db.models import Q

from .organisations import Organisation


class PartnerEndpoint(models.Model):
    """Where escalations to one partner system are POSTed. Managed by admins."""

    class Kind(models.TextChoices):
        POLICE_INCIDENT = "police_incident", "Police incident / crime recording"
        COUNCIL_CASE = "council_case", "Council case system"

    name = models.CharField(max_length=120, unique=True)
    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="partner_endpoints",
        help_text="The recipient: the access log names it, and the sharing rules decide whether "
                  "personal details may be sent to it.",
    )
    url = models.URLField(max_length=500, validators=[URLValidator(schemes=["https", "http"])],
                          help_text="https:// (plain http only where ESCALATION_ALLOW_HTTP is on)")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    auth_header_name = models.CharField(max_length=60, default="Authorization", blank=True)
    # The header's value (e.g. "Bearer …"), or "env:NAME" to read it from the environment of
    # the worker so the secret stays out of the database. Never shown again once saved.
    auth_header_secret = models.CharField(max_length=500, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["police_incident", "council_case"]), name="partner_endpoint_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.organisation})"


class Escalation(models.Model):
    """One record passed to one partner endpoint, and how its delivery went."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    record_type = models.CharField(max_length=40)
    record_id = models.UUIDField()
    endpoint = models.ForeignKey(PartnerEndpoint, on_delete=models.PROTECT, related_name="escalations")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    purpose = models.TextField(blank=True)
    # Decided when requested (and logged then): whether persons and descriptions go with it.
    personal_fields = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_status = models.PositiveIntegerField(null=True, blank=True)
    partner_reference = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # The s.62 disclosure row written with this one.
    access_log_entry = models.ForeignKey(
        "warden_app.AccessLogEntry", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["pending", "delivered", "failed"]), name="escalation_state_valid"
            ),
            models.CheckConstraint(
                condition=~Q(state="delivered") | Q(delivered_at__isnull=False),
                name="escalation_delivered_has_time",
            ),
        ]
        indexes = [
            models.Index(fields=["record_type", "record_id"], name="escalation_record"),
            models.Index(fields=["state", "next_attempt_at"], condition=Q(state="pending"),
                         name="escalation_pending"),
        ]

    def __str__(self) -> str:
        return f"{self.record_type} {self.record_id} → {self.endpoint.name} ({self.state})"
