"""The warden domain: organisations, areas, teams, records, review and accountability."""
from django.apps import AppConfig
from django.db.models.signals import post_migrate


class WardenAppConfig(AppConfig):
    name = "warden_app"
    verbose_name = "Field records"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The domain registers its record types with the generic sync engine.
        from . import sync_types  # noqa: F401
        from .db_roles import grant_after_migrate

        # Every migrate ends by granting the application's role its privileges (db_roles.py).
        post_migrate.connect(grant_after_migrate, sender=self, dispatch_uid="warden_app.db_roles")
