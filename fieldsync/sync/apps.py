"""Django app config for the sync engine."""
from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "fieldsync.sync"
    label = "sync"
    verbose_name = "Sync engine"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from fieldsync import openapi  # noqa: F401  (registers the HTTP Basic extension)
        from fieldsync.db import utc_datetime_dumper_register

        from . import schema  # noqa: F401  (registers the device token's)

        utc_datetime_dumper_register()
