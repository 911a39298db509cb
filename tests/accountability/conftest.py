"""The demo partnership with observations pushed by real handhelds, for the accountability
tests: the log chain, the DPO's API and admin, subjects' rights, retention, escalation."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest
from django.core.cache import cache
from django.test import Client

from tests.analysis.conftest import basic_client
from tests.sync.conftest import IN_LEIGH, Handheld, mutation, observation_data
from tests.warden.conftest import demo  # noqa: F401 (a fixture)

PASSWORD = "fieldsync-demo"
JANE = {"name": "Jane Doe", "description": "red coat, tall", "approx_age": 34}


@dataclass
class DpoWorld:
    demo: object
    handhelds: dict = field(default_factory=dict)

    @property
    def users(self) -> dict:
        return self.demo.users

    def handheld(self, username: str) -> Handheld:
        from fieldsync.sync.services.devices import device_enrol

        if username not in self.handhelds:
            enrolment = device_enrol(username=username, password=PASSWORD, label=f"{username}-test", platform="test")
            self.handhelds[username] = Handheld(token=enrolment.token, device_id=str(enrolment.device.pk))
        return self.handhelds[username]

    def observe(self, username: str = "warden_leigh", at=IN_LEIGH, **data) -> str:
        """A new observation pushed by `username`'s handheld; its id."""
        record_id = str(uuid.uuid4())
        result = self.handheld(username).push_one(mutation("observation", "create", record_id,
                                                           observation_data(at=at, **data)))
        assert result["status"] == "applied", result
        return record_id

    def edit(self, username: str, record_id: str, base_version: int, **data) -> dict:
        return self.handheld(username).push_one(mutation("observation", "update", record_id, data,
                                                         base_version=base_version))

    def client(self, username: str | None) -> Client:
        return basic_client(username)


@pytest.fixture
def world(demo):  # noqa: F811
    cache.clear()  # throttle counters of earlier tests live in Redis
    return DpoWorld(demo=demo)
