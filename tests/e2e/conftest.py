"""Fixtures of the browser tests."""
import pytest
from django.core.cache import cache

from tests.sync.conftest import build_world


@pytest.fixture
def world(transactional_db, settings, tmp_path):
    """tests.sync's world, committed for the live server, with media in a fresh directory."""
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()  # throttle counters of earlier tests live in Redis
    return build_world()


@pytest.fixture
def browser():
    """One Chromium for every device of a test: a context each (handheld_support.phone_context
    and the like) is as separate as two phones, and one browser process is what two shared
    cores can carry."""
    from tests.e2e.handheld_support import chromium  # Playwright only where a browser is used

    with chromium() as browser:
        yield browser
