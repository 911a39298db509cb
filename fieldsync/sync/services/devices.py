"""Enrolling and revoking handhelds."""
from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import authenticate
from django.db import transaction
from django.utils import timezone

from fieldsync.errors import ApiError

from .. import registry
from ..models import Device
from ..tokens import token_hash, token_new


@dataclass(frozen=True)
class Enrolment:
    device: Device
    token: str


def device_enrol(*, username: str, password: str, label: str, platform: str, request=None) -> Enrolment:
    """Check credentials and role, then create the device and its token in one transaction."""
    user = authenticate(request, username=username, password=password)
    if user is None:
        raise ApiError("invalid_credentials", "Unknown user or wrong password.", status_code=401)
    policy = registry.device_policy()
    if not policy.can_enrol(user):
        raise ApiError(
            "enrol_forbidden", "Only field staff and supervisors may enrol a handheld.", status_code=403
        )
    token = token_new()
    with transaction.atomic():
        device = Device.objects.create(
            user=user, label=label, platform=platform, token_hash=token_hash(token)
        )
        policy.device_logged(user=user, device=device, action="enrol")
    return Enrolment(device=device, token=token)


def device_revoke(*, device: Device, by) -> Device:
    """Revoke a device: every later call from it answers `device_revoked` with a wipe."""
    policy = registry.device_policy()
    if not policy.can_revoke(by, device):
        raise ApiError("permission_denied", "You may not revoke this device.", status_code=403)
    with transaction.atomic():
        locked = Device.objects.select_for_update().get(pk=device.pk)
        if locked.revoked_at is None:
            locked.revoked_at = timezone.now()
            locked.revoked_by = by
            locked.save(update_fields=["revoked_at", "revoked_by"])
            policy.device_logged(user=by, device=locked, action="revoke")
    return locked
