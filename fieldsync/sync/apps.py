"""Django app config for the sync engine."""
from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "fieldsync.sync"
    label = "sync"
    verbose_name = "Sync engine"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import schema  # noqa: F401  (registers the OpenAPI auth extension)
        from .db import utc_datetime_dumper_register

        utc_datetime_dumper_register()
