"""Fixtures of the fault tests: a committed world on the test database (child processes must
see it), this test's own server processes, and a connection for reading what was stored."""
from __future__ import annotations

import functools

import psycopg
import pytest

from tests.deploy.stack import child_database_url
from tests.sync.conftest import PASSWORD, build_world

from .support import Stack

# The users the tests enrol handhelds for.
ENROLLING = ("warden", "warden2")


@functools.cache
def pbkdf2_password() -> str:
    """The app servers run the production hashers, which do not include the test session's
    fast MD5 one: enrolling users get a hash they can verify (made once, it is slow)."""
    from django.contrib.auth.hashers import make_password

    return make_password(PASSWORD, hasher="pbkdf2_sha256")


@pytest.fixture
def world(transactional_db):
    from warden_app.models import User

    built = build_world()
    User.objects.filter(username__in=ENROLLING).update(password=pbkdf2_password())
    return built


@pytest.fixture
def stack(world, tmp_path):
    """Redis of this test's own, running; the test starts gunicorn (and a worker) with the
    settings it needs. Every process is stopped before transactional_db empties the tables,
    so no child holds a session then."""
    server = Stack(tmp_path, child_database_url("fieldsync-app"))
    try:
        server.start_redis()
        yield server
    finally:
        server.stop_all()


@pytest.fixture
def check_db(transactional_db):
    """Its own autocommit connection to the test database: reads what the children committed
    without holding a snapshot or a lock."""
    with psycopg.connect(child_database_url("faults-check"), autocommit=True) as conn:
        yield conn
