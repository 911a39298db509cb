"""The rectify form of the DPO's pages: the description, and one row per person
(name, description, approximate age) plus a blank row to add one, read back into the
`changes` that accountability's `record_rectify` validates as a push would be.

A person's keys other than the three shown travel in the row's hidden `original` (the JSON
of the person as it was), so correcting a name never drops what the form does not show,
and a field left as it was is sent as it was (no spurious change in the record's history)."""
from __future__ import annotations

import json
from typing import Any

from django.http import QueryDict

from fieldsync import parsing
from fieldsync.errors import invalid

from .queries import text

PERSON_FIELDS = ("name", "description", "approx_age")
MAX_PERSONS = 50  # the engine's limit on persons_involved (sync json_list)


def person_rows(persons: list) -> list[dict[str, Any]]:
    """The rows the form shows: each person as it is, then one blank row."""
    rows = []
    for person in persons if isinstance(persons, list) else []:
        person = person if isinstance(person, dict) else {}
        rows.append({
            **{key: "" if person.get(key) is None else str(person.get(key)) for key in PERSON_FIELDS},
            "original": json.dumps(person, ensure_ascii=False, sort_keys=True),
            "others": sorted(set(person) - set(PERSON_FIELDS)),
        })
    if len(rows) < MAX_PERSONS:
        rows.append({**dict.fromkeys(PERSON_FIELDS, ""), "original": "{}", "others": [], "new": True})
    return rows


def rectify_changes(post: QueryDict) -> dict[str, Any]:
    """`changes` for record_rectify from the form; ApiError (400) for a bad value."""
    changes: dict[str, Any] = {}
    if "description" in post:
        changes["description"] = text("description", post.get("description"), max_chars=4000, multiline=True)
    count = parsing.integer("persons", post.get("persons"), minimum=0, maximum=MAX_PERSONS + 1)
    if count is not None:
        persons = []
        for n in range(count):
            original = _original(n, post.get(f"person-{n}-original"))
            if post.get(f"person-{n}-remove"):
                continue
            person = dict(original)
            for key in PERSON_FIELDS:
                typed = text(f"person {n + 1} {key}", post.get(f"person-{n}-{key}"), max_chars=1000)
                if typed:
                    person[key] = _age(typed) if key == "approx_age" else typed
                elif original.get(key) not in ("", None):
                    person[key] = ""  # cleared on purpose
            if person:
                persons.append(person)
        changes["persons_involved"] = persons
    return changes


def _original(n: int, raw: str | None) -> dict:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise invalid(f"person-{n}-original", "invalid", "the form was altered: reload the record")
    return value


def _age(typed: str):
    """An age in digits is a number (as handhelds send it); anything else stays text."""
    return int(typed) if typed.isascii() and typed.isdigit() and len(typed) <= 3 else typed
