"""Reads of the engine's own state: what a device (or a supervisor's team) has open."""
from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from . import registry, rows
from .models import Conflict, Device, QuarantinedMutation
from .registry import Row
from .shown import Consulted, conflict_values

# The purpose logged when the sync status shows conflict values (s.62).
STATUS_PURPOSE = "sync status: open conflicts of the user's or their team's handhelds"


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


def _current_rows(refs) -> dict[tuple[str, str], Row]:
    """The current row of each `(type, id)` referred to, by `(type, str(id))`; one query per
    record type, unknown types left out."""
    by_type: dict[str, list] = defaultdict(list)
    for type_name, record_id in refs:
        by_type[type_name].append(record_id)
    found: dict[tuple[str, str], Row] = {}
    for type_name, ids in by_type.items():
        rtype = registry.get(type_name)
        if rtype is not None:
            for record_id, row in rows.load_rows(rtype, ids).items():
                found[(type_name, str(record_id))] = row
    return found


def _conflict_entry(user, c: Conflict, row: Row | None, window_start, consulted: Consulted) -> dict:
    """An open conflict as `user` may see it: the values of fields they may see of a record
    in their device's scope (as a pull would hand it over), the rest withheld by name."""
    rtype = registry.get(c.record_type)
    in_scope = (rtype is not None and row is not None and not row.get("deleted_at")
                and rtype.policy.in_device_scope(user, row, window_start))
    fields, withheld = (conflict_values(rtype, row, user, c.fields, in_scope=in_scope, consulted=consulted)
                        if rtype is not None else ({}, sorted(c.fields)))
    entry = {"conflict_id": str(c.pk), "type": c.record_type, "id": str(c.record_id), "reason": c.reason,
             "mutation_id": str(c.mutation_id), "fields": fields, "created_at": _iso(c.created_at)}
    if withheld:
        entry["withheld"] = withheld
    return entry


def _quarantine_entry(q: QuarantinedMutation, *, own: bool) -> dict:
    """A kept mutation, without its payload. Error messages can quote what was sent, so
    only its sender reads them; a supervisor gets the codes, enough to know what to fix."""
    errors = q.errors if own else _error_codes(q.errors)
    return {"mutation_id": q.mutation_id, "type": q.record_type, "id": q.record_id, "op": q.op,
            "code": q.code, "errors": errors, "created_at": _iso(q.created_at)}


def _error_codes(errors: Any) -> dict:
    if not isinstance(errors, dict):
        return {}
    return {name: [{"code": p.get("code", "")} for p in problems if isinstance(p, dict)]
            for name, problems in errors.items() if isinstance(problems, list)}


def device_health(device: Device, *, user, window_start, consulted: Consulted) -> dict:
    """One device's sync health as `user` sees it (the device's own user, or a supervisor)."""
    conflicts = list(Conflict.objects.filter(device=device, resolved_at__isnull=True).order_by("created_at")[:500])
    quarantined = QuarantinedMutation.objects.filter(device=device, resolved_at__isnull=True).order_by("created_at")
    current = _current_rows((c.record_type, c.record_id) for c in conflicts)
    own = device.user_id == user.pk
    missing = missing_attachments([device.pk])
    return {
        "device_id": str(device.pk),
        "label": device.label,
        "user": device.user.get_username(),
        "revoked": device.revoked_at is not None,
        "last_push_at": _iso(device.last_push_at),
        "last_pull_at": _iso(device.last_pull_at),
        "conflicts": [_conflict_entry(user, c, current.get((c.record_type, str(c.record_id))), window_start, consulted)
                      for c in conflicts],
        "quarantined": [_quarantine_entry(q, own=own) for q in quarantined[:500]],
        "missing_attachments": (missing if own else _in_scope_only(user, missing, window_start)),
    }


def _in_scope_only(user, entries: list[dict], window_start) -> list[dict]:
    """The entries (`{type, id, ...}`) whose record is in `user`'s device scope: a supervisor
    watching a team device sees only what they would pull, even when its user is also in
    another team."""
    current = _current_rows((entry["type"], entry["id"]) for entry in entries)
    return [entry for entry in entries
            if (row := current.get((entry["type"], entry["id"]))) is not None
            and registry.get(entry["type"]).policy.in_device_scope(user, row, window_start)]


def sync_status(*, user, device: Device) -> dict:
    """This device's open conflicts, quarantine and missing photos; supervisors also get
    the same for the devices of the teams they supervise. Conflict values are scoped and
    redacted as a pull page is, and those showing personal values are logged (s.62) in the
    same transaction, before the answer leaves."""
    window_start = timezone.now() - timedelta(days=settings.SYNC_WINDOW_DAYS)
    consulted = Consulted()
    with transaction.atomic():
        status = device_health(device, user=user, window_start=window_start, consulted=consulted)
        team = [d for d in devices_visible_to(user) if d.pk != device.pk and d.user_id != user.pk]
        if team:
            status["team_devices"] = [device_health(d, user=user, window_start=window_start, consulted=consulted)
                                      for d in team]
        consulted.log(user=user, device=device, purpose=STATUS_PURPOSE)
    return status
