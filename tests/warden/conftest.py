"""Fixtures for the warden tests: the demo partnership of product.md on real PostGIS."""
import pytest
from django.test import override_settings


@pytest.fixture(autouse=True, scope="session")
def fast_password_hashing():
    """The seed hashes eight passwords per run; the real hasher would dominate the suite."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture
def demo(db):
    """The demo partnership: `.users["warden_leigh"]`, `.areas["LEIGH-TC"]`,
    `.teams["Leigh"]`, `.organisations["Wigan Council"]`, `.forms["observation"]`."""
    from warden_app.services.demo import demo_seed

    return demo_seed()
