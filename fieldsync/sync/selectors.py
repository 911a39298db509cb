"""Reads of the engine's own state: what a device (or a supervisor's team) has open."""
from __future__ import annotations

from django.db import connection

from . import registry
from .models import Conflict, Device, QuarantinedMutation


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def devices_visible_to(user):
    """Devices whose health this user may see (their own, or their teams' as supervisor)."""
    policy = registry.device_policy()
    candidates = Device.objects.select_related("user").filter(user_id__in=policy.watched_user_ids(user))
    return [d for d in candidates if policy.can_see_device(user, d)]


def missing_attachments(device_ids: list) -> list[dict]:
    """Photos named by records from these devices that have not arrived yet."""
    found: list[dict] = []
    with connection.cursor() as cursor:
        for rtype in registry.all_types():
            if "photos" not in rtype.field_map:
                continue
            cursor.execute(
                f"SELECT r.id, p.sha FROM {rtype.table} r CROSS JOIN LATERAL unnest(r.photos) AS p(sha) "
                "WHERE r.device_id = ANY(%s::uuid[]) AND r.deleted_at IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM sync_attachment a WHERE a.sha256 = p.sha)",
                [device_ids],
            )
            found += [{"type": rtype.name, "id": str(rid), "sha256": sha} for rid, sha in cursor.fetchall()]
    return found


def device_health(device: Device) -> dict:
    conflicts = Conflict.objects.filter(device=device, resolved_at__isnull=True).order_by("created_at")
    quarantined = QuarantinedMutation.objects.filter(device=device, resolved_at__isnull=True).order_by("created_at")
    return {
        "device_id": str(device.pk),
        "label": device.label,
        "user": device.user.get_username(),
        "revoked": device.revoked_at is not None,
        "last_push_at": _iso(device.last_push_at),
        "last_pull_at": _iso(device.last_pull_at),
        "conflicts": [
            {"conflict_id": str(c.pk), "type": c.record_type, "id": str(c.record_id), "reason": c.reason,
             "mutation_id": str(c.mutation_id), "fields": c.fields, "created_at": _iso(c.created_at)}
            for c in conflicts[:500]
        ],
        "quarantined": [
            {"mutation_id": q.mutation_id, "type": q.record_type, "id": q.record_id, "op": q.op,
             "code": q.code, "errors": q.errors, "created_at": _iso(q.created_at)}
            for q in quarantined[:500]
        ],
        "missing_attachments": missing_attachments([device.pk]),
    }


def sync_status(*, user, device: Device) -> dict:
    """This device's open conflicts, quarantine and missing photos; supervisors also get
    the same for the devices of the teams they supervise."""
    status = device_health(device)
    team = [d for d in devices_visible_to(user) if d.pk != device.pk and d.user_id != user.pk]
    if team:
        status["team_devices"] = [device_health(d) for d in team]
    return status
