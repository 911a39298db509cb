"""Assertions shared by the sync test suites: what the database holds after a push, and
the protocol's one error shape.

Every check reads the real tables (PostgreSQL) or the real endpoints; nothing is mocked.
"""
from __future__ import annotations

import uuid

from django.db import connection

from tests.error_shape import assert_error_body

TABLES = (
    "warden_app_observation",
    "warden_app_streetaudit",
    "warden_app_audititem",
    "sync_receipt",
    "sync_recordversion",
    "sync_change",
    "sync_conflict",
    "sync_quarantinedmutation",
)
RECORD_TABLES = TABLES[:3]


def counts() -> dict[str, int]:
    """Row counts of the record tables and of the engine's tables."""
    found = {}
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"SELECT count(*) FROM {table}")
            found[table] = cursor.fetchone()[0]
    return found


def model_of(type_name: str):
    from warden_app.models import AuditItem, Observation, StreetAudit

    return {"observation": Observation, "street_audit": StreetAudit, "audit_item": AuditItem}[type_name]


def versions(type_name: str, record_id) -> list:
    from fieldsync.sync.models import RecordVersion

    return list(RecordVersion.objects.filter(record_type=type_name, record_id=record_id).order_by("version"))


def receipts(mutation_id):
    from fieldsync.sync.models import Receipt

    return list(Receipt.objects.filter(mutation_id=mutation_id))


def quarantined(mutation_id):
    from fieldsync.sync.models import QuarantinedMutation

    return list(QuarantinedMutation.objects.filter(mutation_id=str(mutation_id)))


def conflicts_of(record_id):
    from fieldsync.sync.models import Conflict

    return list(Conflict.objects.filter(record_id=record_id).order_by("created_at"))


def status_of(handheld) -> dict:
    response = handheld.get("/api/v1/sync/status")
    assert response.status_code == 200, response.content
    return response.json()


def assert_error(response, status: int, code: str) -> dict:
    """An error answer in the protocol's one shape: `{code, message, fields}` as JSON."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    return assert_error_body(response.json(), code)


def error_codes(result: dict, field: str) -> list[str]:
    return [e["code"] for e in result.get("errors", {}).get(field, [])]


def assert_rejected(handheld, m: dict, result: dict, code: str, field: str | None = None,
                    field_code: str | None = None) -> None:
    """A rejection: the answer says why per field, the mutation is quarantined whole with
    the same errors, and the device's sync status lists it."""
    assert result["status"] == "rejected", result
    assert result["mutation_id"] == m["mutation_id"]
    assert result["code"] == code, result
    if field is not None:
        assert field_code in error_codes(result, field), result
    kept = quarantined(m["mutation_id"])
    assert len(kept) == 1, f"expected one quarantined row for {m['mutation_id']}, got {len(kept)}"
    row = kept[0]
    assert row.code == code
    assert row.errors == result["errors"]
    assert row.payload == as_kept(m), "the quarantine keeps the mutation as sent"
    assert str(row.device_id) == handheld.device_id
    listed = [q for q in status_of(handheld)["quarantined"] if q["mutation_id"] == m["mutation_id"]]
    assert len(listed) == 1, "the rejection shows in GET /api/v1/sync/status"
    assert listed[0]["code"] == code
    assert listed[0]["errors"] == result["errors"]


def as_kept(value):
    """A value as a jsonb column keeps it: NUL, which jsonb refuses, becomes U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {as_kept(k): as_kept(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_kept(v) for v in value]
    return value


def assert_not_stored(type_name: str, record_id) -> None:
    assert not model_of(type_name).objects.filter(pk=record_id).exists()
    assert versions(type_name, record_id) == []
    from fieldsync.sync.models import Change

    assert not Change.objects.filter(record_type=type_name, record_id=record_id).exists()


def new_id() -> uuid.UUID:
    return uuid.uuid4()

