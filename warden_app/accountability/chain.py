"""The access log's hash chain: what a row's hash covers, and how it is computed.

hash(n) = sha256(prev_hash(n) || canonical JSON of row n), prev_hash(1) = 64 zeros. The
canonical JSON is every column of the row but the hash itself, keys sorted, no spaces,
UTF-8, times in UTC with microseconds: the same bytes whoever computes them.
"""
from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

GENESIS = "0" * 64

# The columns a hash covers, read as values() from AccessLogEntry.
CONTENT_FIELDS = (
    "id", "xid", "at", "actor_id", "action", "record_type", "record_ids", "device_id", "recipient",
    "purpose", "details",
)


def canonical(row: dict[str, Any], seq: int) -> bytes:
    """The bytes hashed for one row at chain position `seq`."""
    at: datetime = row["at"]
    content = {
        "seq": seq,
        "id": row["id"],
        "xid": row["xid"],
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_id": row["actor_id"],
        "action": row["action"],
        "record_type": row["record_type"],
        "record_ids": [str(value) for value in row["record_ids"]],
        "device_id": str(row["device_id"]) if row["device_id"] is not None else None,
        "recipient": row["recipient"],
        "purpose": row["purpose"],
        "details": row["details"],
    }
    return orjson.dumps(content, option=orjson.OPT_SORT_KEYS)


def link_hash(prev_hash: str, row: dict[str, Any], seq: int) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(row, seq)).hexdigest()
