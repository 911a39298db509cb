"""How long personal details are kept, per record type, as the admins set it."""
from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from .sharing import RECORD_TYPES


class RetentionPeriod(models.Model):
    """Personal fields of `record_type` records are erased `personal_days` after the record's
    time (observed_at for observations, created_at otherwise). A type without a row here
    follows settings.RETENTION_PERSONAL_DAYS (accountability/selectors.retention_days)."""

    record_type = models.CharField(max_length=40, choices=RECORD_TYPES, unique=True)
    personal_days = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    note = models.TextField(blank=True, help_text="The retention schedule entry or decision this follows")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["record_type"]
        constraints = [
            models.CheckConstraint(condition=Q(personal_days__gte=1), name="retention_period_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.record_type}: personal details kept {self.personal_days} days"
