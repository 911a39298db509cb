"""A pull page's `data` is written by PostgreSQL (fields.wire_sql); every other answer's by
Python (fields.to_wire). Both must give the same JSON for every kind of field, with and
without the values that have edge cases (microseconds, nulls, empty lists, a route)."""
import uuid

import orjson
import pytest

from fieldsync.sync import pull, registry, rows
from fieldsync.sync.push import wire_data

from .conftest import audit_data, item_data, mutation, observation_data, point

PHOTO = "ab" * 32

OBSERVATIONS = [
    observation_data(observed_at="2026-01-02T03:04:05.000100+00:00", photos=[PHOTO], accuracy_m=5.0),
    observation_data(observed_at="2026-01-02T03:04:05+00:00", description="", persons_involved=[],
                     action_taken=[], accuracy_m=None),
    observation_data(observed_at="2026-06-30T23:59:59.999999+01:00", description='quotes " and \\ and é ✓',
                     accuracy_m=12.345678901234567),
]
AUDITS = [
    audit_data(route={"type": "LineString", "coordinates": [[-2.5171, 53.4975], [-2.51705, 53.49761]]},
               started_at="2026-01-02T04:00:00+00:00", finished_at="2026-01-02T05:00:00.5+00:00",
               notes="two\nlines"),
    audit_data(),
]


def sql_view(rtype, record_id, visible: frozenset[str]) -> tuple[dict, bool, dict]:
    """PostgreSQL's data as `visible` allows, whether it shows personal data, and per
    personal field whether it holds anything."""
    kind = pull._TypeView(rtype)
    row, text_id, common, personal = rows.load_views(rtype, [record_id], rtype.policy.personal_fields)[record_id]
    assert text_id == str(record_id)
    data, shows = kind.data(row, common, personal, visible)
    holds = {name: personal[2 * i + 1] for i, name in enumerate(kind.personal)}
    return orjson.loads(orjson.dumps(data)), shows, holds


def both_ways(rtype, record_id) -> tuple[dict, dict, dict]:
    """(Python's data, PostgreSQL's data, PostgreSQL's "holds anything" per personal field)."""
    python = orjson.loads(orjson.dumps(wire_data(rtype, rows.load_rows(rtype, [record_id])[record_id])))
    sql, shows, holds = sql_view(rtype, record_id, frozenset(spec.name for spec in rtype.fields))
    assert shows == any(holds.values())
    return python, sql, holds


@pytest.mark.parametrize("data", OBSERVATIONS + AUDITS, ids=lambda d: str(sorted(d))[:40])
def test_sql_wire_json_equals_python_wire_json(world, data):
    warden = world.enrol("warden")
    type_ = "street_audit" if "title" in data else "observation"
    record_id = uuid.uuid4()
    result = warden.push_one(mutation(type_, "create", record_id, data))
    assert result["status"] == "applied", result
    rtype = registry.get(type_)
    python, sql, holds = both_ways(rtype, record_id)
    # Equal as parsed JSON: times compare as text, so the same instant written another way
    # (the handheld compares values as sent) fails here too.
    assert sql == python
    assert holds == {name: bool(python[name]) for name in rtype.policy.personal_fields}


def test_audit_item_with_and_without_a_grade(world):
    warden = world.enrol("warden")
    audit = uuid.uuid4()
    warden.push_one(mutation("street_audit", "create", audit, audit_data(location=point((-2.517, 53.4975)))))
    rtype = registry.get("audit_item")
    for extra in ({"grade": "C"}, {"issue_type": "other", "grade": None}):
        item = uuid.uuid4()
        assert warden.push_one(mutation("audit_item", "create", item, item_data(audit, **extra)))["status"] == "applied"
        python, sql, _ = both_ways(rtype, item)
        assert sql == python and sql["street_audit"] == str(audit)


def test_redacted_fields_are_left_out_and_the_rest_kept(world):
    warden = world.enrol("warden")
    record_id = uuid.uuid4()
    warden.push_one(mutation("observation", "create", record_id, OBSERVATIONS[0]))
    rtype = registry.get("observation")
    everything = frozenset(spec.name for spec in rtype.fields)
    full, shows_all, _ = sql_view(rtype, record_id, everything)
    redacted, shows_none, _ = sql_view(rtype, record_id, everything - rtype.policy.personal_fields)
    assert set(full) - set(redacted) == set(rtype.policy.personal_fields)
    assert redacted == {k: v for k, v in full.items() if k not in rtype.policy.personal_fields}
    assert shows_all and not shows_none


@pytest.mark.django_db
def test_text_array_literal_keeps_every_text_as_it_was():
    """db.text_array writes list columns for COPY: commas, quotes, backslashes, braces,
    spaces, an empty text and the word NULL all come back as they went in."""
    from fieldsync import db

    texts = ["a,b", 'say "hi"', "back\\slash", "{brace}", " padded ", "", "NULL", "é ✓", "tab\there"]
    with db.cursor() as cursor:
        cursor.execute("SELECT %s::text[]", [db.text_array(texts)])
        assert cursor.fetchone()[0] == texts
        cursor.execute("SELECT %s::text[]", [db.text_array([])])
        assert cursor.fetchone()[0] == []
        # ...and through COPY, as the push writes it (COPY's own escaping on top).
        cursor.execute("CREATE TEMPORARY TABLE lists (t text[])")
        with cursor.copy("COPY lists (t) FROM STDIN") as copy:
            copy.write_row([db.text_array(texts)])
            copy.write_row([db.text_array(["new\nline"])])
        cursor.execute("SELECT t FROM lists")
        assert [r[0] for r in cursor.fetchall()] == [texts, ["new\nline"]]
