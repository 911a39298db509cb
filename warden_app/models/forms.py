"""Versioned form definitions: what a handheld may record, fixed per version."""
from django.conf import settings
from django.db import models


class FormDefinition(models.Model):
    """One published version of the form for a record type.

    Records name the version they were made with and are validated against it, so a
    handheld that was offline while a new version was published never fails.
    `definition` holds the code lists the version allows, e.g.
    `{"checklist": [{"code": "litter", "label": "Litter", "graded": true}, …]}`.
    """

    RECORD_TYPES = [
        ("observation", "Observation"),
        ("street_audit", "Street audit"),
    ]

    record_type = models.CharField(max_length=40, choices=RECORD_TYPES)
    version = models.PositiveIntegerField()
    title = models.CharField(max_length=200)
    definition = models.JSONField(default=dict)
    published_at = models.DateTimeField(auto_now_add=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True
    )

    class Meta:
        ordering = ["record_type", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["record_type", "version"], name="form_version_unique"),
            models.CheckConstraint(condition=models.Q(version__gte=1), name="form_version_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.get_record_type_display()} form v{self.version}"
