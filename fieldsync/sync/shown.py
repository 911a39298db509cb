"""What the engine shows of stored records outside a pull page (push answers, sync status):
scoped and redacted as a pull is, and logged as an s.62 consultation when personal values leave.

A pull page decides redaction in `pull._build_changes`; every other answer that carries a
record's values goes through this module, so the rule is the same everywhere and
`tests/security/test_personal_reads.py` can find every place that decides it.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from . import registry
from .fields import to_wire
from .registry import RecordType, Row

# Values that say nothing about a person: showing them is no consultation.
_EMPTY = (None, "", [], {})


def wire_data(rtype: RecordType, row: Row, fields: frozenset[str] | None = None) -> dict:
    """The record's `data` as sent on the wire, optionally limited to `fields`."""
    data = {}
    for spec in rtype.fields:
        if fields is not None and spec.name not in fields:
            continue
        data[spec.name] = to_wire(spec, row.get(spec.name))
    return data


class Consulted:
    """The records one answer hands over with personal values in them, by type; written to
    the access log once per type, inside the answer's transaction, before it leaves."""

    def __init__(self) -> None:
        self.ids: dict[str, dict[Any, None]] = defaultdict(dict)  # an ordered set per type

    def add(self, type_name: str, record_id: Any) -> None:
        self.ids[type_name][record_id] = None

    def __bool__(self) -> bool:
        return any(self.ids.values())

    def log(self, *, user, device, purpose: str) -> None:
        for type_name, ids in self.ids.items():
            if ids:
                registry.get(type_name).policy.record_consulted(
                    user=user, device=device, record_ids=list(ids), purpose=purpose)
        self.ids.clear()


def shows_personal(rtype: RecordType, values: dict, visible: Iterable[str]) -> bool:
    """Whether any personal field among `visible` holds a value in `values`."""
    personal = rtype.policy.personal_fields
    return any(name in personal and values.get(name) not in _EMPTY for name in visible)


def record_view(rtype: RecordType, row: Row, user, consulted: Consulted) -> dict:
    """The record as `user` may see it, with the server's fields (as in a pull upsert);
    `consulted` learns of it when personal values are in it."""
    visible = rtype.policy.visible_fields(user, row)
    if shows_personal(rtype, row, visible):
        consulted.add(rtype.name, row["id"])
    return {
        "type": rtype.name, "id": str(row["id"]), "version": row["version"],
        "data": wire_data(rtype, row, visible), **rtype.policy.server_view(row),
    }


def conflict_values(rtype: RecordType, row: Row | None, user, fields: dict, *, in_scope: bool,
                    consulted: Consulted) -> tuple[dict, list[str]]:
    """A stored conflict's `{field: {device, server}}` as `user` may see it now: the fields
    they may see of the record as it stands, when the record is in their scope; the others
    are withheld (named, without values). Judged on today's record, not the day of the
    conflict: rights and the record's place may have changed since."""
    if row is None or not in_scope:
        return {}, sorted(fields)
    visible = rtype.policy.visible_fields(user, row) | {"_deleted"}
    shown = {name: values for name, values in fields.items() if name in visible}
    withheld = sorted(name for name in fields if name not in visible)
    personal = rtype.policy.personal_fields
    if any(name in personal and isinstance(values, dict)
           and any(v not in _EMPTY for v in values.values()) for name, values in shown.items()):
        consulted.add(rtype.name, row["id"])
    return shown, withheld
