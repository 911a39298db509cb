"""Personal API tokens expire, and end with a password change.

Tokens made before this migration get an expiry of API_TOKEN_LIFETIME_DAYS from now (not
from their creation: a token still in use must not stop without warning on deploy day) and
the fingerprint of their user's current password."""
from datetime import timedelta

from django.conf import settings
from django.db import migrations, models
from django.utils import timezone


def backfill(apps, schema_editor):
    from warden_app.services.api_tokens import password_fingerprint

    ApiToken = apps.get_model("warden_app", "ApiToken")
    expires = timezone.now() + timedelta(days=settings.API_TOKEN_LIFETIME_DAYS)
    for token in ApiToken.objects.select_related("user").iterator():
        token.expires_at = expires
        token.password_fingerprint = password_fingerprint(token.user.password)
        token.save(update_fields=["expires_at", "password_fingerprint"])


class Migration(migrations.Migration):

    dependencies = [
        ("warden_app", "0010_access_log_seals"),
    ]

    operations = [
        migrations.AddField(model_name="apitoken", name="expires_at", field=models.DateTimeField(null=True)),
        migrations.AddField(model_name="apitoken", name="prefix",
                            field=models.CharField(blank=True, max_length=12, default="")),
        migrations.AddField(model_name="apitoken", name="password_fingerprint",
                            field=models.CharField(editable=False, max_length=64, default="")),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.AlterField(model_name="apitoken", name="expires_at", field=models.DateTimeField()),
        migrations.AlterField(model_name="apitoken", name="prefix", field=models.CharField(blank=True, max_length=12)),
        migrations.AlterField(model_name="apitoken", name="password_fingerprint",
                              field=models.CharField(editable=False, max_length=64)),
    ]
