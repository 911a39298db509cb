"""DRF authentication for handhelds: `Authorization: Bearer <device token>`."""
from __future__ import annotations

from rest_framework.authentication import BaseAuthentication, get_authorization_header

from .errors import SyncError
from .models import Device
from .tokens import TOKEN_PREFIX, token_hash


class DeviceTokenAuthentication(BaseAuthentication):
    """Authenticates as the device's user and sets `request.auth` to the Device.

    A revoked device gets `401 device_revoked` with `wipe: true` on every call, so the
    handheld deletes its local store.
    """

    keyword = b"bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise SyncError("not_authenticated", "Malformed Authorization header.", status_code=401)
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise SyncError("not_authenticated", "Malformed token.", status_code=401) from None
        if not token.startswith(TOKEN_PREFIX):
            return None  # another bearer scheme (personal API tokens) may claim it
        device = (
            Device.objects.select_related("user").filter(token_hash=token_hash(token)).first()
        )
        if device is None:
            raise SyncError("invalid_token", "Unknown device token.", status_code=401)
        if device.revoked_at is not None:
            raise SyncError(
                "device_revoked",
                "This device has been revoked. Delete all local data.",
                status_code=401,
                extra={"wipe": True},
            )
        if not device.user.is_active:
            raise SyncError("user_inactive", "This account is disabled.", status_code=401)
        return device.user, device

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="fieldsync"'
