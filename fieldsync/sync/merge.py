"""Three-way merge of a device's patch against changes the server made since its base.

Pure functions: no database. The push decides with them, then writes.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

EARTH_RADIUS_M = 6_371_008.8


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres between two (lon, lat) points.

    Haversine on the mean Earth radius: within 0.5% of the WGS84 ellipsoid distance, i.e.
    within 5 cm at the default 10 m tolerance, which is far below GPS error.
    """
    lon1, lat1, lon2, lat2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass
class MergeOutcome:
    apply: dict[str, Any] = field(default_factory=dict)
    # field -> (device value, server value) for fields kept as a conflict
    conflicts: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    location_conflict: bool = False


def _accuracy(value: Any) -> float:
    return math.inf if value is None else float(value)


def merge_patch(
    *,
    current: dict[str, Any],
    patch: dict[str, Any],
    server_changed: set[str],
    base: dict[str, Any] | None,
    location_group: Sequence[str],
    tolerance_m: float,
    sent: dict[str, Any] | None = None,
) -> MergeOutcome:
    """Split `patch` (only fields whose value differs from `current`) into what applies
    and what conflicts. `server_changed` holds the fields other writers changed after the
    device's base version; `base` is the record as the device last saw it; `sent` is every
    value the device sent (a fix's accuracy counts even where it equals the server's).

    The location group merges as one fix, judged by how far each side moved the point from
    the base: both beyond the tolerance → a conflict; only one → that move is kept (the
    other side merely refined the old fix, and a real move must never be dropped); neither
    → the two fixes are the same place, and the one with the better accuracy is kept."""
    outcome = MergeOutcome()
    group = set(location_group)
    for name, value in patch.items():
        if name in group:
            continue
        if name in server_changed:
            outcome.conflicts[name] = (value, current.get(name))
        else:
            outcome.apply[name] = value

    group_patch = {name: patch[name] for name in location_group if name in patch}
    if not group_patch:
        return outcome
    if not (server_changed & group):
        outcome.apply.update(group_patch)
        return outcome

    loc_name, acc_name = location_group[0], location_group[1]
    device_fix = {**{n: v for n, v in (sent or {}).items() if n in group}, **group_patch}
    base_loc = (base or {}).get(loc_name) or current.get(loc_name)
    device_loc = device_fix.get(loc_name, base_loc)
    server_loc = current.get(loc_name)
    device_moved = base_loc is not None and device_loc is not None and distance_m(base_loc, device_loc) > tolerance_m
    server_moved = base_loc is not None and server_loc is not None and distance_m(base_loc, server_loc) > tolerance_m
    if device_moved and server_moved:
        outcome.location_conflict = True
        for name, value in group_patch.items():
            outcome.conflicts[name] = (value, current.get(name))
        return outcome
    if device_moved:
        outcome.apply.update(group_patch)
        return outcome
    if server_moved:
        return outcome
    # Both fixes are within the tolerance of the base: keep the better one, no conflict.
    device_accuracy = _accuracy(device_fix.get(acc_name, (base or {}).get(acc_name)))
    if device_accuracy < _accuracy(current.get(acc_name)):
        outcome.apply.update(group_patch)
    return outcome
