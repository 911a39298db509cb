"""Fixtures for the warden tests: the demo partnership of product.md on real PostGIS."""
import pytest


@pytest.fixture
def demo(db):
    """The demo partnership: `.users["warden_leigh"]`, `.areas["LEIGH-TC"]`,
    `.teams["Leigh"]`, `.organisations["Wigan Council"]`, `.forms["observation"]`."""
    from warden_app.services.demo import demo_seed

    return demo_seed()
