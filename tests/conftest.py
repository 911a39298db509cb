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
