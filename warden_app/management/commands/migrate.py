"""`manage.py migrate` as the owner role: Django's migrate, connected with DATABASE_OWNER_URL
when it is set (settings.DATABASE_OWNER), so the tables belong to the owner and never to the
role the application connects as. The other commands keep DATABASE_URL."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.management.base import CommandError
from django.core.management.commands.migrate import Command as DjangoMigrate
from django.db import DEFAULT_DB_ALIAS, connections

_CONNECTION_KEYS = ("NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS")


@contextmanager
def as_owner(alias: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    owner = settings.DATABASE_OWNER
    if not owner or alias != DEFAULT_DB_ALIAS:
        yield
        return
    connection = connections[alias]
    if owner["NAME"] != connection.settings_dict["NAME"]:
        raise CommandError(f"DATABASE_OWNER_URL names database {owner['NAME']!r}, "
                           f"DATABASE_URL {connection.settings_dict['NAME']!r}: they must be the same")
    saved = {key: connection.settings_dict[key] for key in _CONNECTION_KEYS}
    connection.close()
    connection.settings_dict.update({key: owner[key] for key in _CONNECTION_KEYS if key != "NAME"})
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)


class Command(DjangoMigrate):
    help = DjangoMigrate.help + " Connects as DATABASE_OWNER_URL's role when that is set."

    def handle(self, *args, **options) -> None:
        with as_owner(options["database"]):
            super().handle(*args, **options)
