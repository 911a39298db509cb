"""Personal API tokens: how desktop tools (QGIS, GDAL, scripts) authenticate as their user."""
from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """`Authorization: Bearer fsp_…`. The token is shown once; only its sha256 is kept.

    A token works until it expires, is revoked, its user is deactivated or its user's
    password changes: `password_fingerprint` is an HMAC of the password hash the user had
    when the token was made (as Django's session hash is), so any way of setting a new
    password (the admin, `changepassword`, a reset) ends every older token at once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=120, blank=True, help_text="What the token is for, e.g. 'QGIS laptop'")
    token_hash = models.CharField(max_length=64, unique=True)
    # The first characters of the token, to tell one from another in a list (not a secret:
    # far too short to guess the rest from).
    prefix = models.CharField(max_length=12, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    password_fingerprint = models.CharField(max_length=64, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name or 'token'} of {self.user_id}"
