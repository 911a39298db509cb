"""An analyst's request for a purpose grant: which personal fields of which record type, for
what purpose and until when; an administrator decides it (approve makes the PurposeGrant,
refuse says why). The request is the analyst's own words; only the decision opens anything."""
from django.conf import settings
from django.db import models
from django.db.models import F, Q

from .sharing import RECORD_TYPES


class PurposeGrantRequest(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Waiting for a decision"
        APPROVED = "approved", "Approved"
        REFUSED = "refused", "Refused"

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="purpose_grant_requests"
    )
    record_type = models.CharField(max_length=40, choices=RECORD_TYPES)
    fields = models.JSONField(default=list)
    purpose = models.TextField()
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField()
    requested_at = models.DateTimeField(auto_now_add=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True, help_text="Why it was refused (shown to the analyst)")
    grant = models.OneToOneField(
        "warden_app.PurposeGrant", on_delete=models.PROTECT, null=True, blank=True, related_name="request"
    )

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.CheckConstraint(condition=Q(valid_until__gt=F("valid_from")), name="purpose_request_period_valid"),
            models.CheckConstraint(condition=~Q(purpose=""), name="purpose_request_has_purpose"),
            # Nobody decides their own request.
            models.CheckConstraint(condition=~Q(decided_by=F("requested_by")),
                                   name="purpose_request_not_self_decided"),
            models.CheckConstraint(condition=~Q(state="refused") | ~Q(reason=""),
                                   name="purpose_request_refusal_reason"),
            models.CheckConstraint(condition=~Q(state="approved") | Q(grant__isnull=False),
                                   name="purpose_request_approved_has_grant"),
        ]

    def __str__(self) -> str:
        return f"{self.record_type}: {', '.join(self.fields)} for {self.requested_by_id} ({self.get_state_display()})"
