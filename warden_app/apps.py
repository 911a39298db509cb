"""The warden domain: organisations, areas, teams, records, review and accountability."""
from django.apps import AppConfig


class WardenAppConfig(AppConfig):
    name = "warden_app"
    verbose_name = "Field records"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The domain registers its record types with the generic sync engine.
        from . import sync_types  # noqa: F401
