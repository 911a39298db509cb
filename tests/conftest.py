"""Shared fixtures: real PostgreSQL/PostGIS (pytest-django's test database) and real Redis."""
import pytest


@pytest.fixture
def role_groups(db):
    from warden_app.services.roles import role_groups_ensure

    return role_groups_ensure()
