"""A small partnership for sync tests, and a handheld client speaking the protocol.

Everything goes through the real HTTP stack (Django test client, or real sockets against
`live_server` where concurrency matters), real PostgreSQL/PostGIS and real Redis.
"""
from __future__ import annotations

import functools
import itertools
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.gis.geos import MultiPolygon, Polygon
from django.core.cache import cache
from django.test import Client

# Leigh: a box around (-2.517, 53.4975); Wigan: around (-2.6325, 53.545). East edge of
# "Leigh West" touches the west edge of "Leigh" at lon -2.525 (a shared edge).
LEIGH_BOX = (-2.525, 53.492, -2.509, 53.503)
LEIGH_WEST_BOX = (-2.541, 53.492, -2.525, 53.503)
WIGAN_BOX = (-2.640, 53.540, -2.625, 53.550)
IN_LEIGH = (-2.517, 53.4975)
IN_WIGAN = (-2.6325, 53.545)
OUTSIDE = (-2.300, 53.400)

PASSWORD = "correct-horse-battery-9"


def now_iso(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def point(lonlat) -> dict:
    return {"type": "Point", "coordinates": list(lonlat)}


def observation_data(at=IN_LEIGH, **extra) -> dict:
    data = {
        "qualifier": "nuisance",
        "incident_type": "street_drinking",
        "observed_at": now_iso(timedelta(minutes=-5)),
        "description": "Group drinking by the bus station",
        "action_taken": ["advice"],
        "persons_involved": [{"description": "male, 30s, red coat", "approx_age": 35}],
        "location": point(at),
        "accuracy_m": 6.5,
        "fix_source": "gps",
    }
    data.update(extra)
    return data


def audit_data(at=IN_LEIGH, **extra) -> dict:
    data = {"title": "Market St walk", "started_at": now_iso(timedelta(minutes=-30)), "form_version": 1,
            "location": point(at), "accuracy_m": 4.0, "fix_source": "gps"}
    data.update(extra)
    return data


def item_data(audit_id, at=IN_LEIGH, **extra) -> dict:
    data = {"street_audit": str(audit_id), "issue_type": "litter", "grade": "C", "form_version": 1,
            "location": point(at), "accuracy_m": 5.0, "fix_source": "gps"}
    data.update(extra)
    return data


def mutation(type_, op, record_id, data=None, base_version=None, mutation_id=None) -> dict:
    m = {"mutation_id": str(mutation_id or uuid.uuid4()), "type": type_, "op": op, "id": str(record_id),
         "base_version": base_version, "client_time": now_iso()}
    if data is not None:
        m["data"] = data
    return m


@dataclass
class Handheld:
    """One enrolled device, talking to the server through a Django test client."""

    token: str
    device_id: str
    client: Client = field(default_factory=Client)
    cursor: str | None = None
    store: dict = field(default_factory=dict)  # (type, id) -> change, as a client keeps it

    @property
    def auth(self) -> dict:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.token}"}

    def push(self, mutations: list[dict], expect: int = 200):
        response = self.client.post("/api/v1/sync/push", json.dumps({"mutations": mutations}),
                                    content_type="application/json", **self.auth)
        assert response.status_code == expect, response.content
        return response.json()

    def push_one(self, m: dict) -> dict:
        return self.push([m])["results"][0]

    def pull(self, limit: int = 500, cursor: str | None = "__own__", expect: int = 200):
        use = self.cursor if cursor == "__own__" else cursor
        url = f"/api/v1/sync/pull?limit={limit}" + (f"&cursor={use}" if use else "")
        response = self.client.get(url, **self.auth)
        assert response.status_code == expect, response.content
        return response.json()

    def pull_all(self, limit: int = 500) -> list[dict]:
        """Page until has_more is false, applying changes to `store` like a client."""
        changes = []
        for _ in range(10_000):
            page = self.pull(limit)
            changes += page["changes"]
            for change in page["changes"]:
                key = (change["type"], change["id"])
                if change["op"] == "upsert":
                    self.store[key] = change
                else:
                    self.store.pop(key, None)
            self.cursor = page["cursor"]
            if not page["has_more"]:
                return changes
        raise AssertionError("pull never finished")

    def get(self, path: str):
        return self.client.get(path, **self.auth)


@dataclass
class World:
    orgs: dict
    areas: dict
    teams: dict
    users: dict
    forms: dict
    _counter: itertools.count = field(default_factory=itertools.count)

    def enrol(self, username: str, label: str | None = None) -> Handheld:
        client = Client()
        response = client.post(
            "/api/v1/devices/enrol",
            json.dumps({"username": username, "password": PASSWORD,
                        "label": label or f"{username}-{next(self._counter)}", "platform": "test"}),
            content_type="application/json",
        )
        assert response.status_code == 201, response.content
        body = response.json()
        return Handheld(token=body["token"], device_id=body["device_id"], client=client)


@functools.cache
def password_hash() -> str:
    """Hashed once per test session with the session's preferred hasher (tests/conftest.py),
    so logins never re-hash it and invalidate other sessions."""
    from django.contrib.auth.hashers import make_password

    return make_password(PASSWORD)


def build_world():
    from warden_app.models import Area, BoundarySet, FormDefinition, Organisation, User
    from warden_app.roles import Role
    from warden_app.services.roles import role_groups_ensure
    from warden_app.services.sharing import sharing_defaults_ensure
    from warden_app.services.teams import team_add_member, team_get_or_create, team_set_areas
    from warden_app.sync_types import forms_changed

    groups = role_groups_ensure()
    sharing_defaults_ensure()  # a transactional test before this one may have flushed it
    council = Organisation.objects.create(name="Test Council", slug="test-council", kind="council")
    police = Organisation.objects.create(name="Test Police", slug="test-police", kind="police")
    ops = BoundarySet.objects.create(name="Ops", slug="ops", operational=True)
    areas = {}
    for name, box in (("leigh", LEIGH_BOX), ("leigh_west", LEIGH_WEST_BOX), ("wigan", WIGAN_BOX)):
        areas[name] = Area.objects.create(boundary_set=ops, name=name.title(), code=name.upper(),
                                          geom=MultiPolygon(Polygon.from_bbox(box), srid=4326))
    forms = {
        "observation": FormDefinition.objects.create(record_type="observation", version=1, title="ASB",
                                                     definition={}),
        "street_audit": FormDefinition.objects.create(
            record_type="street_audit", version=1, title="EVA",
            definition={"checklist": [
                {"code": "litter", "graded": True}, {"code": "graffiti", "graded": True},
                {"code": "detritus", "graded": True}, {"code": "fly_posting", "graded": True},
                {"code": "fly_tipping"}, {"code": "street_light_out"}, {"code": "other"},
            ]},
        ),
    }
    forms_changed()
    leigh = team_get_or_create(name="Leigh")
    team_set_areas(team=leigh, areas=[areas["leigh"]])
    wigan = team_get_or_create(name="Wigan")
    team_set_areas(team=wigan, areas=[areas["wigan"]])
    users = {}

    def person(username, org, role, team=None, supervisor=False):
        user = User.objects.create(username=username, password=password_hash(), organisation=org)
        user.groups.add(groups[role])
        if team:
            team_add_member(team=team, user=user, supervisor=supervisor)
        users[username] = user
        return user

    person("warden", council, Role.WARDEN, leigh)
    person("warden2", council, Role.WARDEN, leigh)
    person("pcso", police, Role.PCSO, leigh)
    person("warden_wigan", council, Role.WARDEN, wigan)
    person("supervisor", council, Role.SUPERVISOR, leigh, supervisor=True)
    person("analyst", council, Role.ANALYST)
    person("partner", police, Role.PARTNER_VIEWER)
    return World(orgs={"council": council, "police": police}, areas=areas,
                 teams={"leigh": leigh, "wigan": wigan}, users=users, forms=forms)


@pytest.fixture
def world(db):
    cache.clear()  # throttle counters from earlier tests live in Redis
    return build_world()


@pytest.fixture
def tworld(transactional_db):
    """The same world, committed, for tests with several connections at once."""
    cache.clear()
    return build_world()


@pytest.fixture
def warden(world) -> Handheld:
    """The Leigh warden's handheld, enrolled."""
    return world.enrol("warden")
