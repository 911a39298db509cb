"""Shared fixtures: real PostgreSQL/PostGIS (pytest-django's test database) and real Redis."""
import pytest


@pytest.fixture(autouse=True)
def _fresh_form_cache():
    """Form versions are cached by id; each test database starts its ids afresh."""
    from warden_app.sync_types import forms_changed

    forms_changed()
    yield
    forms_changed()


@pytest.fixture
def role_groups(db):
    from warden_app.services.roles import role_groups_ensure

    return role_groups_ensure()
