"""How deep JSON may nest (fieldsync/sync/bodies.py), over the real HTTP stack and the real
PostgreSQL: a push's mutation past SYNC_MAX_MUTATION_DEPTH is rejected alone (`too_deep`)
while its neighbours apply; any body past JSON_MAX_DEPTH, or past orjson's own 1024
levels, or too deep for orjson to write back (254), is refused whole with a clean 400 and
changes nothing. Never a 500."""
from __future__ import annotations

import json
import uuid

import pytest
from django.conf import settings

from .conftest import PASSWORD, mutation, observation_data
from .pushkit import assert_error, assert_not_stored, assert_rejected, quarantined
from .test_bad_input import PUSH, nothing_stored, post_raw  # noqa: F401 - nothing_stored is a fixture


def nested(levels: int, leaf=1):
    """`levels` levels of arrays around `leaf` (so `nested(1)` is `[1]`)."""
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


def deep_text(levels: int) -> str:
    """The same as JSON text, written by hand: json.dumps itself recurses."""
    return "[" * levels + "1" + "]" * levels


def observation(**extra) -> dict:
    return mutation("observation", "create", uuid.uuid4(), observation_data(**extra))


def mutation_with_depth(depth: int, where: str) -> dict:
    """A create whose depth (its own object being level 1) is exactly `depth`, the nesting
    put in the data field `where` (data is level 2, its value's arrays from 3)."""
    m = observation()
    m["data"][where] = nested(depth - 2)
    return m


@pytest.mark.parametrize("where", ["description", "persons_involved", "not_a_field"])
def test_a_too_deep_mutation_is_rejected_alone_and_its_neighbours_apply(world, warden, where):
    before, after = observation(), observation()
    deep = mutation_with_depth(settings.SYNC_MAX_MUTATION_DEPTH + 1, where)
    answer = warden.push([before, deep, after])
    first, middle, last = answer["results"]
    assert first["status"] == last["status"] == "applied", answer
    assert_rejected(warden, deep, middle, "too_deep", "mutation", "too_deep")
    assert_not_stored("observation", deep["id"])
    # Resent as it was: the same answer, stored once.
    again = warden.push([deep])["results"][0]
    assert again["status"] == "duplicate" and again["original"]["code"] == "too_deep", again
    assert len(quarantined(deep["mutation_id"])) == 1


def test_a_mutation_at_the_limit_is_judged_by_its_fields(world, warden):
    """At SYNC_MAX_MUTATION_DEPTH exactly, depth is no fault: the nested description is
    refused as a wrong type, per field, as any other bad value."""
    m = mutation_with_depth(settings.SYNC_MAX_MUTATION_DEPTH, "description")
    result = warden.push([m])["results"][0]
    assert_rejected(warden, m, result, "validation_failed", "description", "wrong_type")


def test_a_long_route_is_not_mistaken_for_depth(world, warden):
    """Many brackets, little depth: counting brackets only decides when to walk."""
    m = observation(persons_involved=[{"description": f"person {i}"} for i in range(40)])
    assert warden.push([m])["results"][0]["status"] == "applied"


@pytest.mark.parametrize("levels", [settings.JSON_MAX_DEPTH - 1, 300, 1000, 1030, 100_000],
                         ids=["past-JSON_MAX_DEPTH", "past-orjson-dumps", "just-under-orjson-parse",
                              "past-orjson-parse", "hundred-thousand"])
def test_a_push_past_the_body_limit_is_refused_whole(nothing_stored, levels):  # noqa: F811
    """The deep mutation sits two levels down; its neighbour is not applied either."""
    good = json.dumps(observation())
    deep = json.dumps(mutation("observation", "create", uuid.uuid4(), {"description": "@"}))
    deep = deep.replace('"@"', deep_text(levels))
    body = '{"mutations": [' + good + ", " + deep + "]}"
    response = post_raw(nothing_stored, body)
    error = assert_error(response, 400, "too_deep")
    # orjson's own limit past 1024 levels, ours below.
    assert ("1024" if levels > 1024 else str(settings.JSON_MAX_DEPTH)) in error["message"], error


def test_deep_keys_beside_the_mutations_are_refused(nothing_stored):  # noqa: F811
    body = '{"mutations": [], "extra": ' + deep_text(settings.JSON_MAX_DEPTH) + "}"
    assert_error(post_raw(nothing_stored, body), 400, "too_deep")


def test_a_push_at_the_body_limit_is_read(world, warden):
    """A mutation exactly at JSON_MAX_DEPTH - 2 levels (its push then JSON_MAX_DEPTH deep) is
    read, and rejected alone."""
    m = mutation_with_depth(settings.JSON_MAX_DEPTH - 2, "not_a_field")
    assert warden.push([m])["results"][0]["code"] == "too_deep"


def test_an_enrolment_too_deep_is_400(world):
    from django.test import Client

    body = ('{"username": "warden", "password": "' + PASSWORD + '", "label": "x", "platform": '
            + deep_text(settings.JSON_MAX_DEPTH) + "}")
    response = Client().generic("POST", "/api/v1/devices/enrol", body, content_type="application/json")
    assert_error(response, 400, "too_deep")


def test_the_manifest_tells_a_handheld_every_limit_it_can_check(world, warden, settings):
    settings.JSON_MAX_DEPTH, settings.SYNC_MAX_MUTATION_DEPTH, settings.SYNC_MAX_IMAGE_PIXELS = 40, 12, 1234
    limits = warden.get("/api/v1/sync/manifest").json()["limits"]
    assert limits == {"max_mutations": settings.SYNC_MAX_MUTATIONS, "max_body_bytes": settings.SYNC_MAX_BODY_BYTES,
                      "max_attachment_bytes": settings.SYNC_MAX_ATTACHMENT_BYTES, "max_json_depth": 40,
                      "max_mutation_depth": 12, "max_image_pixels": 1234}
