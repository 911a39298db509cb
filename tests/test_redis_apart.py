"""Tests keep off make run's Redis databases (0: broker, 1: cache; deploy/local/ensure-db.sh),
so make run's worker never runs a task a test left behind, and a test's cache.clear() never
empties the demo's cache (fieldsync/settings.py, under pytest)."""
import os
import re

from django.conf import settings

from fieldsync.settings import _apart_from_the_demo


def _db(url: str) -> int:
    return int(re.search(r"/(\d+)$", url).group(1))


def test_the_demo_s_databases_are_swapped_for_the_tests_own():
    assert _apart_from_the_demo("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/2"
    assert _apart_from_the_demo("redis://127.0.0.1:6379/1") == "redis://127.0.0.1:6379/3"
    assert _apart_from_the_demo("redis://127.0.0.1:6379") == "redis://127.0.0.1:6379/2"
    assert _apart_from_the_demo("redis://:pw@cache.example:6380/13") == "redis://:pw@cache.example:6380/13"


def test_broker_results_and_cache_are_not_make_run_s():
    for url in (settings.REDIS_URL, settings.CELERY_BROKER_URL, settings.CELERY_RESULT_BACKEND,
                settings.CACHES["default"]["LOCATION"]):
        assert _db(url) not in (0, 1), url
    # Celery reads the environment ahead of its configuration: both say the same.
    assert os.environ["CELERY_BROKER_URL"] == settings.CELERY_BROKER_URL


def test_celery_publishes_to_the_tests_broker():
    from fieldsync.celery import app

    uri = app.connection_for_write().as_uri()
    assert _db(uri) == _db(settings.CELERY_BROKER_URL) and _db(uri) not in (0, 1), uri
