"""The analysis tests' partnership (tests/analysis/conftest.py), signed in through the session."""
from __future__ import annotations

import pytest
from django.test import Client

from tests.analysis.conftest import build_analysis_world


@pytest.fixture
def world(db, media):
    return build_analysis_world()


@pytest.fixture
def signed_in(world):
    def client(username: str) -> Client:
        c = Client()
        c.force_login(world.users[username])
        return c

    return client
