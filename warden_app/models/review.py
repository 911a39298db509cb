"""Review decisions: one row per decision, with reviewer, time and note."""
from django.conf import settings
from django.db import models
from django.db.models import Q

from ..choices import ReviewState
from .records import Observation, StreetAudit


class Review(models.Model):
    """Exactly one of `observation` / `street_audit` is set (a CHECK keeps it so)."""

    DECISIONS = [
        (ReviewState.HAS_ISSUES.value, ReviewState.HAS_ISSUES.label),
        (ReviewState.APPROVED.value, ReviewState.APPROVED.label),
        (ReviewState.REJECTED.value, ReviewState.REJECTED.label),
        ("comment", "Comment"),
    ]

    observation = models.ForeignKey(
        Observation, on_delete=models.CASCADE, null=True, blank=True, related_name="reviews"
    )
    street_audit = models.ForeignKey(
        StreetAudit, on_delete=models.CASCADE, null=True, blank=True, related_name="reviews"
    )
    record_version = models.PositiveIntegerField()
    decision = models.CharField(max_length=12, choices=DECISIONS)
    note = models.TextField(blank=True)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(observation__isnull=False) & Q(street_audit__isnull=True))
                | (Q(observation__isnull=True) & Q(street_audit__isnull=False)),
                name="review_names_one_record",
            ),
            models.CheckConstraint(
                condition=Q(decision__in=["has_issues", "approved", "rejected", "comment"]),
                name="review_decision_valid",
            ),
            models.CheckConstraint(
                condition=~Q(decision__in=["has_issues", "rejected"]) | ~Q(note=""),
                name="review_returns_and_rejections_have_note",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.decision} by {self.reviewer_id} on v{self.record_version}"
