"""Shared fixtures: real PostgreSQL/PostGIS (pytest-django's test database) and real Redis."""
import pytest
from django.test import override_settings


@pytest.fixture(autouse=True, scope="session")
def fast_password_hashing():
    """Seeds hash many passwords; MD5 keeps that quick in tests. PBKDF2 stays accepted for
    the hashes made with it (tests/sync/conftest.py), which servers in subprocesses verify."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher",
                                             "django.contrib.auth.hashers.PBKDF2PasswordHasher"]):
        yield


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


@pytest.fixture
def media(settings, tmp_path):
    """An empty MEDIA_ROOT of the test's own: photos, thumbnails and export files land here."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture(autouse=True, scope="session")
def _no_tasks_left_on_the_broker():
    """Tasks the suite queued and no worker ran (thumbnails, exports, escalations) are dropped
    at the end: they belong to test databases that are gone. The broker is the tests' own
    Redis database (settings: never make run's), so nothing of the demo is touched."""
    yield
    from fieldsync.celery import app

    try:
        with app.connection_for_write() as connection:
            app.control.purge(connection=connection)
    except Exception:  # Redis down or gone: nothing can be left on it either
        pass
