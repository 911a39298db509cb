"""Personal API tokens: how desktop tools (QGIS, GDAL, scripts) authenticate as their user."""
from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """`Authorization: Bearer fsp_…`. The token is shown once; only its sha256 is kept."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=120, blank=True, help_text="What the token is for, e.g. 'QGIS laptop'")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name or 'token'} of {self.user_id}"
