"""DRF authentication for handhelds: `Authorization: Bearer <device token>`."""
from __future__ import annotations

from functools import cache

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from rest_framework.authentication import BaseAuthentication

from fieldsync import db, parsing
from fieldsync.errors import ApiError

from .models import Device
from .tokens import TOKEN_PREFIX, token_hash


class DeviceTokenAuthentication(BaseAuthentication):
    """Authenticates as the device's user and sets `request.auth` to the Device.

    A revoked device gets `401 device_revoked` with `wipe: true` on every call, so the
    handheld deletes its local store.
    """

    def authenticate(self, request):
        header = parsing.authorization(request)
        if header is None or header[0] != "bearer":
            return None
        try:
            token = parsing.bearer_token(header[1])
        except parsing.CredentialsRefused as exc:
            raise ApiError("not_authenticated", exc.message, status_code=401) from None
        if not token.startswith(TOKEN_PREFIX):
            return None  # another bearer scheme (personal API tokens) may claim it
        device = _device_with_user(token_hash(token))
        if device is None:
            raise ApiError("invalid_token", "Unknown device token.", status_code=401)
        if device.revoked_at is not None:
            raise ApiError(
                "device_revoked",
                "This device has been revoked. Delete all local data.",
                status_code=401,
                extra={"wipe": True},
            )
        if not device.user.is_active:
            raise ApiError("user_inactive", "This account is disabled.", status_code=401)
        return device.user, device

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="fieldsync"'


@cache
def _device_query() -> tuple[str, list[str], list[str]]:
    user_model = get_user_model()
    for model in (Device, user_model):
        # from_db takes values as the ORM would hand them over after its converters: none
        # of these fields may need one (a JSON field would), or it would be skipped here.
        for f in model._meta.concrete_fields:
            if f.get_col(model._meta.db_table).get_db_converters(connection):
                raise ImproperlyConfigured(f"{model.__name__}.{f.name} needs a converter: load it with the ORM")
    device_fields = [f.attname for f in Device._meta.concrete_fields]
    user_fields = [f.attname for f in user_model._meta.concrete_fields]
    columns = [f"d.{Device._meta.get_field(name).column}" for name in device_fields] + [
        f"u.{user_model._meta.get_field(name).column}" for name in user_fields]
    sql = (f"SELECT {', '.join(columns)} FROM {Device._meta.db_table} d "
           f"JOIN {user_model._meta.db_table} u ON u.{user_model._meta.pk.column} = d.user_id "
           f"WHERE d.token_hash = %s")
    return sql, device_fields, user_fields


def _device_with_user(digest: str) -> Device | None:
    """The device holding this token hash, with its user: every handheld call asks, so it is
    one prepared statement, not an ORM query compiled afresh each time (the ORM's select_related
    cost a push of one mutation a fifth of its time)."""
    sql, device_fields, user_fields = _device_query()
    with db.cursor() as cursor:  # server-side binding, so the statement is prepared
        cursor.execute(sql, [digest])
        values = cursor.fetchone()
    if values is None:
        return None
    width = len(device_fields)
    device = Device.from_db(connection.alias, device_fields, values[:width])
    device.user = get_user_model().from_db(connection.alias, user_fields, values[width:])
    return device
