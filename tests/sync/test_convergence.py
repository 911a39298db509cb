"""Convergence under random interleavings (protocol principles 1 and 2, section 5).

Three handhelds of one warden and a supervisor's handheld edit the same records offline,
push in random interleavings, resend (whole batches whose answer was lost, and single
mutations already answered), and pull with random page sizes. Afterwards:

- every mutation has exactly one receipt, and every answer is applied, merged, conflict,
  rejected or duplicate (a duplicate carrying the original answer);
- no value is lost: every value a device sent for a field is in some version snapshot of
  the record (`sync_recordversion.data`) or kept for a supervisor in a conflict
  (`sync_conflict.fields[field].device`);
- every device, after pulling to the end, holds exactly what a first sync of its user
  would give now, at the server's versions;
- every answer that is not a duplicate is what the server stored for that mutation id: the
  version it made (every field of the snapshot, accuracy and fix source too: the sent values
  where it says they applied, the previous version's elsewhere, nothing else changed) or the
  conflict it kept (each field's device and server value), and the live row equals the
  record's latest version.

The values range beyond a few samples: records are created and edited with any valid value
(coordinates anywhere outside the areas the warden may not record in, the poles and the
antimeridian included, points metres apart, accuracies from 0 and subnormal floats to the
maximum or none, every fix source, text of any Unicode up to the length limit, times from
2000 to now with offsets to ±23:59, free-form persons).

`FIELDSYNC_CONVERGENCE_EXAMPLES` (default 25) and `FIELDSYNC_CONVERGENCE_RANDOM=1` (fresh
random examples instead of the fixed derandomised ones) are for bench/convergence.py.
"""
from __future__ import annotations

import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from django.db import connection
from hypothesis import HealthCheck, Phase, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from warden_app.choices import ActionTaken, FixSource, IncidentType, Qualifier

from .conftest import LEIGH_WEST_BOX, WIGAN_BOX, Handheld, mutation, observation_data
from .pull_support import caught_up, pull_caught_up

# Far apart (hundreds of metres, well beyond the 10 m tolerance), all inside Leigh.
POINTS = ((-2.517, 53.4975), (-2.513, 53.4975), (-2.517, 53.5005), (-2.521, 53.494))
STATUSES = {"applied", "merged", "conflict", "rejected", "duplicate"}

LOCATION_GROUP = ("location", "accuracy_m", "fix_source")

# Text of any Unicode a handheld can send (not NUL, which PostgreSQL text cannot hold, nor lone
# surrogates, which are not JSON), up to the 4000-character limit.
CHARACTERS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
TEXT = st.one_of(
    st.sampled_from(["", "one", "two", "three", "four"]),
    st.text(CHARACTERS, max_size=40),
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "😀", "\u202e", "\ufeff", " ", "\u0301"]),
              st.integers(3990, 4000)),
)


def _allowed(point: tuple[float, float]) -> bool:
    """Not in an area the warden may not record in (Leigh West, Wigan): that is refused."""
    lon, lat = point
    return not any(w <= lon <= e and s <= lat <= n for w, s, e, n in (LEIGH_WEST_BOX, WIGAN_BOX))


PLACES = st.one_of(
    st.sampled_from(POINTS),
    # The edges of the world, and points metres apart (inside and beyond the 10 m tolerance).
    st.sampled_from([(-180.0, -90.0), (180.0, 90.0), (0.0, 0.0), (-180.0, 0.0), (180.0, 0.0), (179.999999, -89.5),
                     (-2.517, 53.49753), (-2.51705, 53.4975), (-2.517, 53.49759), (-2.517000000000001, 53.4975)]),
    st.tuples(st.floats(-180, 180), st.floats(-90, 90)),
    # Within metres of a sampled point: the tolerance decides (1e-4 degrees is about 11 m north).
    st.builds(lambda p, dx, dy: (p[0] + dx, p[1] + dy), st.sampled_from(POINTS),
              st.floats(-1.5e-4, 1.5e-4), st.floats(-1.5e-4, 1.5e-4)),
).filter(_allowed)
ACCURACIES = st.one_of(st.sampled_from([3.0, 8.0, 25.0]), st.sampled_from([0.0, 5e-324, 1e-9, 99999.999, 100000.0]),
                       st.floats(0, 100_000), st.integers(0, 100_000), st.none())
FIX_SOURCES = st.sampled_from(FixSource.values)
LATEST = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
TIMES = st.builds(
    lambda at, offset: at.replace(tzinfo=UTC).astimezone(timezone(timedelta(minutes=offset))).isoformat(),
    st.datetimes(min_value=datetime(2000, 1, 1, 0, 0, 1), max_value=LATEST.replace(tzinfo=None)),
    st.integers(-(23 * 60 + 59), 23 * 60 + 59),
)
PLAIN = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53),
                  st.floats(allow_nan=False, allow_infinity=False), st.text(CHARACTERS, max_size=30))
PERSONS = st.lists(st.dictionaries(st.text(CHARACTERS, max_size=40), PLAIN, max_size=3), max_size=3)

VALUES = {
    "description": TEXT,
    "qualifier": st.sampled_from(Qualifier.values),
    "incident_type": st.sampled_from(IncidentType.values),
    "action_taken": st.lists(st.sampled_from(ActionTaken.values), max_size=4),
    "location": st.tuples(PLACES, ACCURACIES, FIX_SOURCES),
    "observed_at": TIMES,
    "persons_involved": PERSONS,
}
# A new record: every field, from the same domains.
CREATE = st.fixed_dictionaries({name: VALUES[name] for name in VALUES})

DEVICES = 4  # 0-2: the warden's handhelds; 3: the supervisor's
RECORDS = 2

edit = st.tuples(st.just("edit"), st.integers(0, DEVICES - 1), st.integers(0, RECORDS - 1),
                 st.lists(st.sampled_from(sorted(VALUES)), min_size=1, max_size=2, unique=True).flatmap(
                     lambda names: st.fixed_dictionaries({n: VALUES[n] for n in names})))
delete = st.tuples(st.just("delete"), st.integers(0, DEVICES - 1), st.integers(0, RECORDS - 1))
# (push, device, resend an answered mutation (which), the answer is lost)
push = st.tuples(st.just("push"), st.integers(0, DEVICES - 1), st.none() | st.integers(0, 50), st.booleans())
pull = st.tuples(st.just("pull"), st.integers(0, DEVICES - 1), st.integers(1, 4))
steps = st.lists(st.one_of(edit, edit, edit, push, push, pull, delete), min_size=1, max_size=24)
creations = st.lists(CREATE, min_size=RECORDS, max_size=RECORDS)
EXAMPLES = int(os.environ.get("FIELDSYNC_CONVERGENCE_EXAMPLES") or 25)
RANDOM = os.environ.get("FIELDSYNC_CONVERGENCE_RANDOM") == "1"
# Shrinking an example of hundreds of requests can take many minutes: off on request.
PHASES = tuple(Phase) if os.environ.get("FIELDSYNC_CONVERGENCE_SHRINK", "1") == "1" else (
    Phase.explicit, Phase.reuse, Phase.generate)
# What the examples did, for bench/convergence.py to print.
TALLY: Counter = Counter()


def wire(name: str, value) -> dict:
    if name == "location":
        (lon, lat), accuracy, source = value
        return {"location": {"type": "Point", "coordinates": [lon, lat]}, "accuracy_m": accuracy,
                "fix_source": source}
    return {name: value}


@dataclass
class Device:
    handheld: Handheld
    user: str
    outbox: list[dict] = field(default_factory=list)
    sent: list[dict] = field(default_factory=list)  # every mutation sent at least once

    def base(self, record_id: str) -> int | None:
        change = self.handheld.store.get(("observation", record_id))
        return change["version"] if change else None


@pytest.fixture
def handhelds(tworld, settings):
    settings.SYNC_DEVICE_RATE = "100000/min"  # hundreds of requests per device, in seconds
    devices = [Device(tworld.enrol("warden"), "warden") for _ in range(3)]
    devices.append(Device(tworld.enrol("supervisor"), "supervisor"))
    return devices


def test_random_interleavings_lose_nothing_and_converge(tworld, handhelds):
    from fieldsync.sync.models import Device as DeviceRow
    from fieldsync.sync.pull import pull_changes
    from warden_app.models import User

    users = {name: User.objects.get(username=name) for name in ("warden", "supervisor")}

    @hypothesis_settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
              phases=PHASES,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(plan=steps, made=creations)
    # Found by this test: one handheld sets only a better accuracy at the same point, then
    # another's offline move of the point by ~400 m is answered `merged` but not applied.
    @example(plan=[("edit", 0, 0, {"location": (POINTS[3], 3.0, "gps")}),
                   ("edit", 1, 0, {"location": (POINTS[0], 3.0, "gps")}),
                   ("push", 1, None, False)], made=None)
    # Two fixes within the tolerance of the base, the later one better: kept whole, fix source too.
    @example(plan=[("edit", 0, 0, {"location": ((-2.51702, 53.49751), 8.0, "network")}),
                   ("edit", 1, 0, {"location": ((-2.51699, 53.49752), 3.0, "gps")}),
                   ("push", 0, None, False), ("push", 1, None, False)], made=None)
    def run(plan, made):
        devices = handhelds
        for device in devices:
            device.outbox.clear()
            device.sent.clear()
        # Fresh records for this example, created by the first handheld, known to all.
        record_ids = [str(uuid.uuid4()) for _ in range(RECORDS)]
        made = made or [None] * RECORDS
        creates = [mutation("observation", "create", rid, _create_data(values))
                   for rid, values in zip(record_ids, made, strict=True)]
        created = devices[0].handheld.push(creates)["results"]
        assert [r["status"] for r in created] == ["applied"] * RECORDS, created
        for m, result in zip(creates, created, strict=True):
            _check_answer(m, result, devices[0], users)
            TALLY["create applied"] += 1
        for device in devices:
            pull_caught_up(device.handheld)
        answers: dict[str, list[dict]] = {}

        def send(device: Device, batch: list[dict], *, lose_answer: bool = False) -> None:
            results = device.handheld.push(batch)["results"]
            assert len(results) == len(batch)
            for m, result in zip(batch, results, strict=True):
                assert result["mutation_id"] == m["mutation_id"]
                assert result["status"] in STATUSES, result
                assert result["status"] != "rejected", (m, result)
                if result["status"] == "duplicate":
                    assert result["original"]["status"] in STATUSES - {"duplicate"}
                elif m["mutation_id"] not in answers:
                    _check_answer(m, result, device, users)
                TALLY[f"{m['op']} {result['status']}"] += 1
                answers.setdefault(m["mutation_id"], []).append(result)
                if m not in device.sent:
                    device.sent.append(m)
            if not lose_answer:
                acknowledged = {m["mutation_id"] for m in batch}
                device.outbox[:] = [m for m in device.outbox if m["mutation_id"] not in acknowledged]

        for step in plan:
            kind, index = step[0], step[1]
            device = devices[index]
            if kind == "edit":
                _, _, r, values = step
                base = device.base(record_ids[r])
                if base is None:
                    continue  # the device no longer holds it (deleted)
                data = {}
                for name, value in values.items():
                    data.update(wire(name, value))
                device.outbox.append(mutation("observation", "update", record_ids[r], data, base_version=base))
            elif kind == "delete":
                base = device.base(record_ids[step[2]])
                if base is not None:
                    device.outbox.append(mutation("observation", "delete", record_ids[step[2]], base_version=base))
            elif kind == "push":
                _, _, resend_old, lose_answer = step
                batch = list(device.outbox)
                if resend_old is not None and device.sent:
                    batch.insert(0, device.sent[resend_old % len(device.sent)])  # answered already
                if batch:
                    send(device, batch, lose_answer=lose_answer)
            else:
                device.handheld.pull_all(limit=step[2])

        # Every outbox drains (a lost answer means the batch goes again: duplicates).
        for device in devices:
            if device.outbox:
                send(device, list(device.outbox))
            assert not device.outbox

        sent = [m for device in devices for m in device.sent]
        mutation_ids = [m["mutation_id"] for m in sent]
        assert len(set(mutation_ids)) == len(mutation_ids)
        with connection.cursor() as c:
            c.execute("SELECT mutation_id::text, count(*), min(status) FROM sync_receipt "
                      "WHERE mutation_id = ANY(%s::uuid[]) GROUP BY mutation_id", [mutation_ids])
            receipts = {mid: (n, status) for mid, n, status in c.fetchall()}
        for mid in mutation_ids:
            assert receipts.get(mid, (0, None))[0] == 1, f"mutation {mid}: {receipts.get(mid)} receipts"
            first, *again = answers[mid]
            assert first["status"] != "duplicate"
            assert first["status"] == receipts[mid][1]
            for later in again:
                assert later["status"] == "duplicate" and later["original"]["status"] == first["status"]

        # Nothing lost.
        snapshots, conflicts = _history(record_ids)
        for m in sent:
            rid = m["id"]
            if m["op"] == "delete":
                deleted = any(d.get("_deleted") for d in snapshots[rid]) or any(
                    f.get("_deleted", {}).get("device") is True for f in conflicts[rid])
                assert deleted, f"delete of {rid} neither applied nor kept: {m}"
                continue
            for name, value in m["data"].items():
                if name in ("accuracy_m", "fix_source"):
                    continue  # within the tolerance the better fix is kept (section 4)
                kept = any(_same(name, s.get(name), value) for s in snapshots[rid]) or any(
                    name in f and _same(name, f[name]["device"], value) for f in conflicts[rid])
                assert kept, f"{name}={value!r} of {m['mutation_id']} lost; answers {answers[m['mutation_id']]}"

        _check_live_rows(record_ids)
        TALLY["examples"] += 1
        TALLY["steps"] += len(plan)

        # Everyone converges on the server's current view.
        for device in devices:
            pull_caught_up(device.handheld, limit=3)
            user = users[device.user]
            row = DeviceRow.objects.get(pk=device.handheld.device_id)
            for _ in range(200):  # a first sync now, to the end of the feed
                fresh, token = {}, None
                while True:
                    # As the handheld reads it: `data` leaves the engine as JSON text.
                    page = orjson.loads(orjson.dumps(pull_changes(user=user, device=row, cursor_token=token,
                                                                  limit=50)))
                    for change in page["changes"]:
                        assert change["op"] == "upsert"
                        fresh[(change["type"], change["id"])] = change
                    token = page["cursor"]
                    if not page["has_more"]:
                        break
                if caught_up(token):
                    break
            held = device.handheld.store
            # Numbers compared as the doubles a handheld reads: jsonb writes a free-form 1e300
            # as a 301-digit integer literal, which Python reads as an int, orjson as a float.
            assert _canon(held) == _canon(fresh), _difference(held, fresh)
            versions = _versions([k[1] for k in held])
            assert {k[1]: v["version"] for k, v in held.items()} == versions

    try:
        run()
    finally:
        if os.environ.get("FIELDSYNC_CONVERGENCE_TALLY"):
            with open(os.environ["FIELDSYNC_CONVERGENCE_TALLY"], "w") as out:
                out.write(orjson.dumps(dict(TALLY)).decode())


def _history(record_ids: list[str]) -> tuple[dict, dict]:
    snapshots = {rid: [] for rid in record_ids}
    conflicts = {rid: [] for rid in record_ids}
    with connection.cursor() as c:
        c.execute("SELECT record_id::text, data, changed_fields FROM sync_recordversion "
                  "WHERE record_type = 'observation' AND record_id = ANY(%s::uuid[])", [record_ids])
        for rid, data, changed in c.fetchall():
            data = _json(data)
            if "_deleted" in changed:
                data = {**data, "_deleted": True}
            snapshots[rid].append(data)
        c.execute("SELECT record_id::text, fields FROM sync_conflict "
                  "WHERE record_type = 'observation' AND record_id = ANY(%s::uuid[])", [record_ids])
        for rid, fields in c.fetchall():
            conflicts[rid].append(_json(fields))
    return snapshots, conflicts


def _versions(record_ids: list[str]) -> dict[str, int]:
    with connection.cursor() as c:
        c.execute("SELECT id::text, version FROM warden_app_observation WHERE id = ANY(%s::uuid[])", [record_ids])
        return dict(c.fetchall())


def _json(value):
    import json

    return json.loads(value) if isinstance(value, str) else value


def _same(name: str, stored, sent) -> bool:
    if name == "location":
        return stored is not None and [round(x, 9) for x in stored["coordinates"]] == [
            round(x, 9) for x in sent["coordinates"]]
    return _canon(stored) == _norm(name, sent)


def _canon(value):
    """JSON as a handheld reads it: every number a double (jsonb keeps numbers as decimals,
    so 7.205759403792614e16 comes back as the integer 72057594037926140, the same double)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {k: _canon(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canon(v) for v in value]
    return value


def _create_data(values: dict | None) -> dict:
    data = observation_data()
    for name, value in (values or {}).items():
        data.update(wire(name, value))
    return data


def _norm(name: str, value):
    """A sent value as the server keeps it in a version snapshot (`to_wire` of the cleaned value)."""
    if value is None:
        return None
    if name == "location":
        return {"type": "Point", "coordinates": [float(value["coordinates"][0]), float(value["coordinates"][1])]}
    if name == "accuracy_m":
        return float(value)
    if name == "observed_at":
        return datetime.fromisoformat(value).astimezone(UTC).isoformat()
    return _canon(value)


def _version(record_id: str, version: int) -> tuple[dict, list[str]]:
    with connection.cursor() as c:
        c.execute("SELECT data, changed_fields FROM sync_recordversion WHERE record_type = 'observation' "
                  "AND record_id = %s AND version = %s", [record_id, version])
        found = c.fetchone()
    assert found is not None, f"no version {version} of {record_id}"
    return _json(found[0]), list(found[1])


def _made_by(mutation_id: str) -> tuple[list[tuple], list[tuple]]:
    """The version rows and the conflict rows this mutation id produced."""
    with connection.cursor() as c:
        c.execute("SELECT record_id::text, version, data, changed_fields, user_id, device_id::text "
                  "FROM sync_recordversion WHERE mutation_id = %s", [mutation_id])
        made = c.fetchall()
        c.execute("SELECT id::text, record_id::text, fields, reason, base_version, server_version, user_id, "
                  "device_id::text, resolved_at FROM sync_conflict WHERE mutation_id = %s", [mutation_id])
        kept = c.fetchall()
    return made, kept


def _check_answer(m: dict, result: dict, device: Device, users: dict) -> None:
    """The answer a device got for a mutation is what the server stored under its id, field by field."""
    status, rid = result["status"], m["id"]
    assert result["id"] == rid and result["mutation_id"] == m["mutation_id"]
    made, kept = _made_by(m["mutation_id"])
    user = users[device.user]
    sent = {name: _norm(name, value) for name, value in m.get("data", {}).items()}
    for row in made:
        assert row[0] == rid and row[1] == result["version"], (row, result)
        assert (row[4], row[5]) == (user.pk, device.handheld.device_id), row
    assert len(made) <= 1 and len(kept) <= 1, (made, kept)
    if made:
        after, changed = _canon(_json(made[0][2])), list(made[0][3])
        before = _canon(_version(rid, result["version"] - 1)[0]) if result["version"] > 1 else {}
    else:
        after, changed = _canon(_version(rid, result["version"])[0]), []
        before = after
    moved = {name for name in set(after) | set(before) if after.get(name) != before.get(name)}

    if m["op"] == "create":
        assert status == "applied" and result["version"] == 1 and made and not kept, (result, made, kept)
        assert {name: after.get(name) for name in sent} == sent, (sent, after)
        return
    if m["op"] == "delete":
        if status == "conflict":
            assert not made and len(kept) == 1, (result, made, kept)
            assert _json(kept[0][2]) == {"_deleted": {"device": True, "server": False}} or (
                _json(kept[0][2])["_deleted"]["device"] is True), kept
        else:
            assert status in ("applied", "merged") and not kept, (result, kept)
            # A tombstone, with the data as it was; or the record was deleted already.
            assert changed == (["_deleted"] if made else []) and after == before, (changed, after, before)
            if not made:
                assert status == "merged"
        return

    # An update: only what it sent changed, and the changed fields are listed.
    assert moved <= set(sent), f"{m['mutation_id']} changed {moved - set(sent)}, which it did not send"
    if made:
        assert sorted(changed) == sorted(moved) and moved, (changed, moved)
    in_conflict: dict = {}
    if status == "conflict":
        assert len(kept) == 1, (result, kept)
        conflict_id, _, fields, reason, base_version, server_version, by, on, resolved = kept[0]
        fields = _canon(_json(fields))
        assert (conflict_id, reason) == (result["conflict_id"], result["reason"]), (kept, result)
        assert (base_version, server_version) == (m["base_version"], result["version"]), (kept, result)
        assert (by, on, resolved) == (user.pk, device.handheld.device_id, None), kept
        for name, sides in fields.items():
            # The device's value as sent, the server's as it stands; neither applied.
            assert sides == {"device": sent[name], "server": after.get(name)}, (name, sides, sent, after)
            assert after.get(name) == before.get(name) and name not in moved, (name, after, before)
        in_conflict = fields
        # The record the answer carries is the server's version, as this user may see it.
        record = result["record"]
        assert record["version"] == result["version"] and record["id"] == rid
        assert _canon(record["data"]) == {name: after.get(name) for name in record["data"]}, (record, after)
        if reason in ("deleted", "review_locked"):
            assert not made and set(fields) == {n for n in sent if sent[n] != after.get(n)}, (fields, sent, after)
            return
    else:
        assert not kept, (result, kept)
        assert status in ("applied", "merged"), result
    group_sent = [name for name in LOCATION_GROUP if name in sent and name not in in_conflict]
    for name, value in sent.items():
        if name in in_conflict or name in LOCATION_GROUP:
            continue
        assert after.get(name) == value, f"{name}: sent {value!r}, stored {after.get(name)!r} ({status})"
    if group_sent:
        # One fix: every value the device sent for it, or none of them (the server's fix stands).
        device_fix = all(after.get(name) == sent[name] for name in group_sent)
        server_fix = all(after.get(name) == before.get(name) for name in LOCATION_GROUP)
        assert device_fix or server_fix, f"a mixed fix: sent {sent}, before {before}, after {after}"
        if status == "applied":
            assert device_fix, f"applied, but the fix is not the device's: sent {sent}, after {after}"


def _check_live_rows(record_ids: list[str]) -> None:
    """Each record as stored now is its latest version snapshot, every field."""
    from fieldsync.sync import registry, rows
    from fieldsync.sync.push import wire_data

    rtype = registry.get("observation")
    live = rows.load_rows(rtype, [uuid.UUID(rid) for rid in record_ids])
    with connection.cursor() as c:
        c.execute("SELECT DISTINCT ON (record_id) record_id, version, data FROM sync_recordversion "
                  "WHERE record_type = 'observation' AND record_id = ANY(%s::uuid[]) "
                  "ORDER BY record_id, version DESC", [record_ids])
        latest = {rid: (version, _json(data)) for rid, version, data in c.fetchall()}
    for rid, row in live.items():
        version, data = latest[rid]
        assert row["version"] == version, (rid, row["version"], version)
        assert _canon(orjson.loads(orjson.dumps(wire_data(rtype, row)))) == _canon(data), (rid, row, data)


def _difference(held: dict, fresh: dict) -> str:
    """Where a device's copy and a first sync disagree, field by field."""
    lines = [f"only held: {sorted(set(held) - set(fresh))}", f"only fresh: {sorted(set(fresh) - set(held))}"]
    for key in sorted(set(held) & set(fresh)):
        a, b = held[key], fresh[key]
        for name in sorted(set(a) | set(b)):
            if name == "data":
                for f in sorted(set(a["data"]) | set(b["data"])):
                    if _canon(a["data"].get(f)) != _canon(b["data"].get(f)):
                        lines.append(f"{key[1]} data.{f}: held {a['data'].get(f)!r} fresh {b['data'].get(f)!r}")
            elif a.get(name) != b.get(name):
                lines.append(f"{key[1]} {name}: held {a.get(name)!r} fresh {b.get(name)!r}")
    return "\n".join(lines)
