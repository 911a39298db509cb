"""The sync engine's public surface: the one module the domain (warden_app) imports from the
engine (import-linter's contracts in pyproject.toml hold it to that). Everything else in
fieldsync.sync is the engine's own and may change without the domain noticing.

What is here, and what for:

- Registration: the domain describes its record types and its device rules.
  `RecordType`, `FieldSpec`, `Row` (a record as a dict of stored columns), the protocols
  `RecordPolicy` and `DevicePolicy` they follow, `register_type`, `set_device_policy`;
  `registered_type(name)` and `registered_types()` read the registry back.
- Records, server-side: `record_load` reads one (optionally locked); `record_server_update`
  writes one as a new version (review, conflicts, rectification, erasure);
  `records_server_update` sets server columns of many at once (placement), each a new
  version with its feed rows.
- Pushes from the server (the demo data): `push_apply`.
- Devices: `device_enrol`, `device_revoke`, `devices_visible_to` and `missing_attachments`
  (the sync health a supervisor sees), and the engine's tables the domain reads, scrubs
  (erasure) and prunes (retention): `Attachment`, `Conflict`, `Device`,
  `QuarantinedMutation`, `Receipt`, `RecordVersion`.
- The committed horizon (`committed_horizon`): below it every change is committed and no
  new one can appear; the access log's sealing waits for it as a pull does.
- Wire helpers: `wire_data`, a record's `data` as the protocol sends it (the snapshot kept
  in each version).
"""
from __future__ import annotations

from .fields import FieldSpec
from .models import Attachment, Conflict, Device, QuarantinedMutation, Receipt, RecordVersion
from .pull import committed_horizon
from .push import push_apply, wire_data
from .registry import DevicePolicy, RecordPolicy, RecordType, Row, set_device_policy
from .registry import all_types as registered_types
from .registry import get as registered_type
from .registry import register as register_type
from .selectors import devices_visible_to, missing_attachments
from .services.devices import device_enrol, device_revoke
from .services.records import record_load, record_server_update, records_server_update

__all__ = [
    "Attachment",
    "Conflict",
    "Device",
    "DevicePolicy",
    "FieldSpec",
    "QuarantinedMutation",
    "Receipt",
    "RecordPolicy",
    "RecordType",
    "RecordVersion",
    "Row",
    "committed_horizon",
    "device_enrol",
    "device_revoke",
    "devices_visible_to",
    "missing_attachments",
    "push_apply",
    "record_load",
    "record_server_update",
    "records_server_update",
    "register_type",
    "registered_type",
    "registered_types",
    "set_device_policy",
    "wire_data",
]
